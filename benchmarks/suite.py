"""The cases of ``proseg-pyro bench``, each beside its baseline, and their report against the targets.

* training: one SVI step (forward, backward, Adam step) of the Pyro ELBO module against the same
  networks under the hand-written loss, and the training loop's step (augmentation, per-image
  noise, clipping: :func:`~proseg_pyro.train.train_step`) for images/s; a short ``fit`` run for
  its peak memory;
* sampling: personalised samples (S x R) drawn vectorised against a per-sample loop (one rater's one
  sample per call) and against a loop over samples that batches the raters; prior samples;
* metrics: :func:`~proseg_pyro.metrics.batch_metrics` over N images x S samples against a loop
  over every pair of masks (timed on a few images, per image);
* backbones: the SVI step with the small U-Net (the CPU default) beside the paper-sized ResNet-34
  U-Net, their parameter counts and peak memory;
* large set (on request): peak memory of building the slice cache of a large set written to disk
  and of training a few steps from it (:mod:`.large_set`).
Every case also reports its peak memory (process RSS on a CPU, tensor memory on a GPU).
"""
from __future__ import annotations

import dataclasses
import math
import tempfile
from typing import Callable

import torch

from proseg_pyro import inference
from proseg_pyro.config import ProSegConfig
from proseg_pyro.data.synthetic import DEFAULT_STYLES, make_synthetic
from proseg_pyro.data.transforms import JointAugment
from proseg_pyro.metrics import batch_metrics
from proseg_pyro.train import build, fit, train_step

from .handwritten import handwritten_loss
from .large_set import bench_large_set
from .loops import metrics_loop, sample_loop, sample_loop_raters_batched
from .measure import interleaved, median, peak_memory, timed
from .size import BenchSize

GIB = 2 ** 30
# (key path in the result, comparison, target)
TARGETS = (
    (("training", "overhead"), "<=", 1.10),
    (("training", "train_images_per_s"), ">=", 9.0),
    (("training", "fit_peak_gib"), "<=", 1.5),
    (("sampling", "speedup"), ">=", 10.0),
    (("sampling", "prior_seconds"), "<", 2.0),
    (("metrics", "batched_seconds"), "<", 5.0),
    (("large_set", "train_peak_gib"), "<", 3.0),
)


def _gib(value: int | None) -> float | None:
    return None if value is None else value / GIB


def _config(size: BenchSize, **changes) -> ProSegConfig:
    return ProSegConfig(image_size=size.image_size, num_raters=size.raters, batch_size=size.batch,
                        depth=min(3, int(math.log2(size.image_size)) - 2), **changes)


def _batch(size: BenchSize, device: torch.device, generator: torch.Generator):
    shape = (size.batch, size.raters, size.image_size, size.image_size)
    x = torch.randn(size.batch, 1, size.image_size, size.image_size, generator=generator)
    y = (torch.rand(shape, generator=generator) < 0.3).long()
    mask = torch.ones(size.batch, size.raters, dtype=torch.bool)
    return x.to(device), y.to(device), mask.to(device)


def bench_training(size: BenchSize, device: torch.device) -> dict:
    """SVI step, Pyro vs hand-written; the training loop's step; a fit run's images/s and peak memory
    (first, so that its peak is that of a process that has trained nothing before)."""
    return {**_bench_fit(size, device), **_bench_step(size, device)}


def _bench_step(size: BenchSize, device: torch.device) -> dict:
    """One SVI step (forward, backward, Adam) of the Pyro ELBO module and of the hand-written loss,
    and one step of the training loop, interleaved."""
    config = _config(size)
    model, guide, elbo = build(config, device)
    optimizer = torch.optim.Adam(elbo.parameters(), lr=config.lr)
    x, y, mask = _batch(size, device, torch.Generator().manual_seed(0))

    def step(loss: Callable[[], torch.Tensor], autocast: bool = False) -> Callable[[], float]:
        def run() -> float:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                value = loss() / size.batch
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            return float(value.detach())
        return run

    augment, generator, positions = JointAugment(), torch.Generator().manual_seed(0), torch.arange(size.batch)

    def training_step() -> float:
        images, labels = augment(x, y, generator=generator)
        return train_step(elbo, optimizer, (images, labels, mask), positions, (0, 1, 0), config.grad_clip,
                          lambda value, what: None)[0]

    cases = {"pyro": step(lambda: elbo(x, y, mask)),
             "handwritten": step(lambda: handwritten_loss(model, guide, x, y, mask)), "train_step": training_step}
    if size.amp:
        cases["pyro_amp"] = step(lambda: elbo(x, y, mask), autocast=True)
    times = {name: median(values) for name, values in interleaved(cases, size.repeats, device).items()}
    out = {"pyro_step_s": times["pyro"], "handwritten_step_s": times["handwritten"],
           "overhead": times["pyro"] / times["handwritten"], "step_images_per_s": size.batch / times["pyro"],
           "train_step_s": times["train_step"], "train_images_per_s": size.batch / times["train_step"],
           "pyro_step_peak_gib": _gib(peak_memory(cases["pyro"], device)),
           "handwritten_step_peak_gib": _gib(peak_memory(cases["handwritten"], device))}
    if size.amp:
        torch.manual_seed(0)
        loss = cases["pyro_amp"]()
        out.update(amp_step_s=times["pyro_amp"], amp_loss_finite=math.isfinite(loss))
    return out


def _bench_fit(size: BenchSize, device: torch.device) -> dict:
    """Images/s of the second of two validation rounds of ``fit`` (augmentation, checkpoints) and its peak memory."""
    styles = tuple(dataclasses.replace(DEFAULT_STYLES[i % len(DEFAULT_STYLES)], name=f"rater{i}")
                   for i in range(size.raters))
    slices, _ = make_synthetic(num_images=size.fit_images, image_size=size.image_size, seed=0, styles=styles)
    config = _config(size, steps=2 * size.fit_steps, val_every=size.fit_steps, warmup_steps=0)
    history = []
    with tempfile.TemporaryDirectory() as out:
        peak = peak_memory(lambda: history.extend(fit(config, slices, None, out, device=device,
                                                      progress=False).history), device)
    return {"fit_images_per_s": size.fit_steps * size.batch / history[-1]["seconds"], "fit_peak_gib": _gib(peak)}


def bench_sampling(size: BenchSize, device: torch.device) -> dict:
    """Personalised sampling vectorised vs per-sample loop; prior sampling time; peak memory."""
    model, guide, _ = build(_config(size), device)
    model.eval()
    guide.eval()
    x = _batch(size, device, torch.Generator().manual_seed(1))[0]
    raters = range(size.raters)
    cases = {"vectorised": lambda: inference.personalised(model, guide, x, raters, size.samples),
             "loop": lambda: sample_loop(model, guide, x, raters, size.samples),
             "loop_raters_batched": lambda: sample_loop_raters_batched(model, guide, x, raters, size.samples),
             "prior": lambda: inference.prior(model, guide, x, size.prior_samples)}
    times = {name: median(values) for name, values in interleaved(cases, size.repeats, device).items()}
    return {"vectorised_s": times["vectorised"], "loop_s": times["loop"],
            "speedup": times["loop"] / times["vectorised"], "loop_raters_batched_s": times["loop_raters_batched"],
            "speedup_raters_batched": times["loop_raters_batched"] / times["vectorised"],
            "images_per_s": size.batch / times["vectorised"],
            "prior_seconds": times["prior"],
            **{f"{name}_peak_gib": _gib(peak_memory(case, device)) for name, case in cases.items()}}


def _metric_inputs(size: BenchSize, images: int, generator: torch.Generator, device: torch.device):
    """Annotations (N, R, H, W) bool and probabilities (N, S, H, W): noisy discs of varied radius."""
    grid = torch.linspace(-1, 1, size.image_size)
    radius = (grid[:, None] ** 2 + grid[None, :] ** 2).sqrt()
    scale = 0.3 + 0.4 * torch.rand(images, 1, 1, 1, generator=generator)
    annotations = radius < scale * (0.8 + 0.4 * torch.rand(images, size.raters, 1, 1, generator=generator))
    noise = torch.rand(images, size.metric_samples, size.image_size, size.image_size, generator=generator)
    probabilities = torch.sigmoid((scale - radius) * 20 + (noise - 0.5) * 4)
    return annotations.to(device), probabilities.to(device)


def bench_metrics(size: BenchSize, device: torch.device) -> dict:
    """Batched metrics over ``metric_images`` x ``metric_samples`` vs the per-pair loop; agreement.

    The inputs are made ``metric_chunk`` images at a time (outside the timing) so that they never
    all sit in memory; each repeat scores the same chunks.
    """
    def chunk(number: int):
        images = min(size.metric_chunk, size.metric_images - number * size.metric_chunk)
        return _metric_inputs(size, images, torch.Generator().manual_seed(number), device)

    first = chunk(0)
    loop_inputs = [(a.cpu().numpy(), p.cpu().numpy()) for a, p in zip(*first)][:size.loop_images]
    batched, loop = [], []
    for _ in range(size.repeats):
        batched.append(sum(timed(lambda: batch_metrics(annotations, None, probabilities), device)
                           for annotations, probabilities in map(chunk, range(math.ceil(size.metric_images /
                                                                                       size.metric_chunk)))))
        loop.append(timed(lambda: [metrics_loop(*pair) for pair in loop_inputs], torch.device("cpu")))
    seconds, per_image = median(batched), median(loop) / len(loop_inputs)
    scored = batch_metrics(first[0][:len(loop_inputs)], None, first[1][:len(loop_inputs)])
    difference = max(abs(metrics_loop(*pair)[key] - scored[key][index]) for index, pair in enumerate(loop_inputs)
                     for key in ("ged", "dice_soft", "dice_max", "dice_match"))
    return {"images": size.metric_images, "samples": size.metric_samples, "batched_seconds": seconds,
            "batched_images_per_s": size.metric_images / seconds, "loop_seconds_per_image": per_image,
            "loop_images_per_s": 1 / per_image, "speedup": per_image * size.metric_images / seconds,
            "max_difference": float(difference),
            "batched_peak_gib": _gib(peak_memory(lambda: batch_metrics(first[0], None, first[1]), device)),
            "loop_peak_gib": _gib(peak_memory(lambda: metrics_loop(*loop_inputs[0]), torch.device("cpu")))}


def bench_backbones(size: BenchSize, device: torch.device) -> dict:
    """One SVI step (forward, backward, Adam) with each backbone, interleaved, with parameters and peak
    memory; at the size rounded up to a multiple of 32 (the ResNet's stride)."""
    size = dataclasses.replace(size, image_size=-(-size.image_size // 32) * 32)
    x, y, mask = _batch(size, device, torch.Generator().manual_seed(0))
    cases, out = {}, {}
    for name in ("small", "resnet34"):
        model, guide, elbo = build(_config(size, backbone=name), device)
        optimizer = torch.optim.Adam(elbo.parameters(), lr=1e-4)

        def step(elbo=elbo, optimizer=optimizer) -> None:
            optimizer.zero_grad()
            (elbo(x, y, mask) / size.batch).backward()
            optimizer.step()

        cases[name] = step
        out[f"{name}_parameters_m"] = sum(p.numel() for p in elbo.parameters()) / 1e6
        out[f"{name}_peak_gib"] = _gib(peak_memory(step, device))
    for name, values in interleaved(cases, size.repeats, device).items():
        out[f"{name}_step_s"] = median(values)
    out["resnet34_slowdown"] = out["resnet34_step_s"] / out["small_step_s"]
    return out


def run(size: BenchSize, device: torch.device, progress: Callable[[str], None] = lambda _: None) -> dict:
    """All cases at ``size`` on ``device``: a JSON-ready dict with the settings and per-case results."""
    result = {"device": str(device), "threads": torch.get_num_threads(), "size": dataclasses.asdict(size)}
    for name, case in (("training", bench_training), ("sampling", bench_sampling), ("metrics", bench_metrics),
                       ("backbones", bench_backbones)):
        progress(name)
        result[name] = case(size, device)
    if size.large_set:
        progress(f"a set of {size.large_set} slices")
        result["large_set"] = bench_large_set(size.large_set, _config(size), device)
    result["targets"] = [{"metric": ".".join(path), "target": f"{op} {bound}", "value": result[path[0]][path[1]],
                          "met": _compare(result[path[0]][path[1]], op, bound)} for path, op, bound in TARGETS
                         if path[0] in result]
    return result


def _compare(value: float | None, op: str, bound: float) -> bool | None:
    if value is None:
        return None
    return {"<=": value <= bound, "<": value < bound, ">=": value >= bound}[op]


def _fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}{unit}"


def report(result: dict) -> str:
    """The human-readable summary of :func:`run`'s result: medians, ratios, targets."""
    size, t, s, m, b = result["size"], result["training"], result["sampling"], result["metrics"], result["backbones"]
    memory = "GPU tensor" if result["device"].startswith("cuda") else "process RSS"
    lines = [
        f"proseg-pyro bench on {result['device']} ({result['threads']} threads): {size['image_size']}x"
        f"{size['image_size']}, batch {size['batch']}, {size['raters']} raters, medians of {size['repeats']} "
        f"interleaved repeats; peak memory is {memory}",
        f"SVI step      Pyro {_fmt(t['pyro_step_s'], ' s', 3)}  hand-written {_fmt(t['handwritten_step_s'], ' s', 3)}"
        f"  overhead {_fmt(t['overhead'], 'x')}  ({_fmt(t['step_images_per_s'], ' images/s', 1)})",
        f"              peak Pyro {_fmt(t['pyro_step_peak_gib'], ' GiB')}  hand-written "
        f"{_fmt(t['handwritten_step_peak_gib'], ' GiB')}",
        f"training      loop step {_fmt(t['train_step_s'], ' s', 3)} ({_fmt(t['train_images_per_s'], ' images/s', 1)});"
        f" fit run {_fmt(t['fit_images_per_s'], ' images/s', 1)}, peak {_fmt(t['fit_peak_gib'], ' GiB')}",
        f"sampling      {size['samples']} x {size['raters']} raters: vectorised {_fmt(s['vectorised_s'], ' s')}"
        f" ({_fmt(s['images_per_s'], ' images/s', 1)})  per-sample loop {_fmt(s['loop_s'], ' s')}"
        f"  speed-up {_fmt(s['speedup'], 'x', 1)}",
        f"              loop over samples, raters batched {_fmt(s['loop_raters_batched_s'], ' s')}"
        f"  speed-up {_fmt(s['speedup_raters_batched'], 'x', 1)}",
        f"              peak vectorised {_fmt(s['vectorised_peak_gib'], ' GiB')}  loop "
        f"{_fmt(s['loop_peak_gib'], ' GiB')}  raters batched {_fmt(s['loop_raters_batched_peak_gib'], ' GiB')}",
        f"prior         {size['prior_samples']} samples x {size['batch']} images: {_fmt(s['prior_seconds'], ' s')}"
        f"  peak {_fmt(s['prior_peak_gib'], ' GiB')}",
        f"metrics       {m['images']} images x {m['samples']} samples: batched {_fmt(m['batched_seconds'], ' s')}"
        f" ({_fmt(m['batched_images_per_s'], ' images/s', 0)})  per-pair loop "
        f"{_fmt(m['loop_seconds_per_image'], ' s/image', 3)}  speed-up {_fmt(m['speedup'], 'x', 0)}"
        f"  (agree to {m['max_difference']:.1e})",
        f"              peak batched ({size['metric_chunk']} images) {_fmt(m['batched_peak_gib'], ' GiB')}  loop "
        f"{_fmt(m['loop_peak_gib'], ' GiB')}",
        f"backbones     SVI step small U-Net {_fmt(b['small_step_s'], ' s', 3)} ({_fmt(b['small_parameters_m'], ' M')}"
        f" parameters, peak {_fmt(b['small_peak_gib'], ' GiB')})  ResNet-34 U-Net {_fmt(b['resnet34_step_s'], ' s', 3)}"
        f" ({_fmt(b['resnet34_parameters_m'], ' M')}, peak {_fmt(b['resnet34_peak_gib'], ' GiB')}):"
        f" {_fmt(b['resnet34_slowdown'], 'x', 1)} slower",
    ]
    if "amp_step_s" in t:
        lines.insert(3, f"              bfloat16 autocast {_fmt(t['amp_step_s'], ' s', 3)}"
                        f" (loss finite: {t['amp_loss_finite']})")
    if "large_set" in result:
        g = result["large_set"]
        lines.append(f"large set     {g['slices']} slices of {g['image_size']}x{g['image_size']}, {g['raters']} raters "
                     f"(cache {_fmt(g['cache_gib'], ' GiB', 1)} on disk): cache built in {_fmt(g['build_s'], ' s', 0)},"
                     f" peak {_fmt(g['build_peak_gib'], ' GiB')}; {g['steps']} steps and a validation from the "
                     f"memory-mapped cache in {_fmt(g['train_s'], ' s', 0)}, peak {_fmt(g['train_peak_gib'], ' GiB')}")
    lines.append("targets")
    for row in result["targets"]:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[row["met"]]
        lines.append(f"  {row['metric']:28s} {_fmt(row['value'], '', 3):>10s}  {row['target']:>8s}  {verdict}")
    return "\n".join(lines)
