"""``compare``: every method on one split, the paper's tables, paired tests; and ``train --method``."""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import proseg_pyro.cli.compare  # noqa: F401  (registers the commands)
import proseg_pyro.cli.train  # noqa: F401
from proseg_pyro.checkpoint import read_checkpoint
from proseg_pyro.cli.main import cli
from proseg_pyro.compare import (all_methods, check_method_lr, compare, consensus_predictions, parse_method_lr,
                                 parse_methods, score_predictions)
from proseg_pyro.comparison import MethodResult, over_seeds
from proseg_pyro.data.slices import SliceSet
from proseg_pyro.errors import ConfigError
from proseg_pyro.evaluate import Predictions

from .conftest import tiny_config
from .helpers import one_thread  # noqa: F401  (a fixture)

TINY = {"base_channels": 8, "depth": 2, "feature_channels": 8, "z_channels": 4, "predictor_hidden": 8,
        "classifier_hidden": 8, "x_decoder_channels": 4, "batch_size": 8, "augment": False}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def compared(tiny_set, tmp_path_factory):
    slices, truth = tiny_set
    config = tiny_config(steps=2).fitted_to(slices)
    out = tmp_path_factory.mktemp("compare")
    methods = ["proseg", "cm_global", "majority_vote", "staple"]
    return compare(slices, config, methods, out, num_samples=4, truth=truth, progress=False, log=lambda _: None), \
        (slices, config, methods, out, truth)


def test_parse_methods_keeps_the_table_order_and_rejects_unknown_names():
    assert parse_methods("all") == all_methods()
    assert parse_methods("staple, proseg,unet") == ["proseg", "unet", "staple"]
    with pytest.raises(ConfigError, match="nope"):
        parse_methods("proseg,nope")


def test_consensus_predictions_repeat_one_mask(tiny_set):
    test = tiny_set[0].split("test")
    predictions = consensus_predictions("majority_vote", test, 3)
    assert predictions.personalised.shape == (len(test), 4, 16, 16)
    assert predictions.prior.shape == (len(test), 3, 16, 16)
    assert (predictions.prior == predictions.personalised[:, :1]).all()


def test_compare_scores_every_method_beside_the_oracle(compared):
    comparison, (slices, *_rest) = compared
    assert list(comparison.results) == ["proseg", "cm_global", "majority_vote", "staple", "oracle"]
    assert {result.kind for result in comparison.results.values()} == {"trained", "consensus", "oracle"}
    images = len(slices.split("test"))
    for result in comparison.results.values():
        assert set(result.rows) == {"personalised", "prior"}
        assert all(len(values) == images for row in result.per_case.values() for values in row.values())
        assert np.array(result.prediction_distances).shape == (4, 4)
    # the oracle draws fresh annotations from the true raters: it beats a 2-step model
    assert comparison.results["oracle"].rows["personalised"]["dice_mean"] > \
        comparison.results["proseg"].rows["personalised"]["dice_mean"]
    assert set(comparison.tests) == {"cm_global", "majority_vote", "staple", "oracle"}
    test = comparison.tests["oracle"]["prior"]["ged"]
    assert test["cases"] == images and 0 <= test["p"] <= 1
    expert = np.array(comparison.expert_distances)
    assert np.allclose(np.diag(expert), 0) and np.allclose(expert, expert.T)
    fused = comparison.results["majority_vote"].styles  # one mask for every rater: no style at all
    assert fused["own_best"] == 0 and fused["margin"] == pytest.approx(0.0) and np.isnan(fused["size_r"])


def test_compare_writes_the_tables(compared, tmp_path):
    comparison, _ = compared
    text = comparison.markdown()
    for heading in ("Table 1/3", "Table 9", "Expert distance matrix", "Rater styles", "Wilcoxon"):
        assert heading in text
    assert "| proseg | prior |" in text and "| oracle | personalised |" in text and "D_generous" in text
    comparison.to_json(tmp_path / "comparison.json")
    content = json.loads((tmp_path / "comparison.json").read_text())
    assert set(content) == {"raters", "settings", "expert_distances", "methods", "wilcoxon"}
    assert content["methods"]["staple"]["train_seconds"] is None


def test_compare_reuses_finished_runs(compared):
    _, (slices, config, methods, out, truth) = compared
    before = read_checkpoint(out / "proseg" / "last.pt")["history"]
    again = compare(slices, config, ["proseg"], out, num_samples=4, progress=False, log=lambda _: None)
    assert read_checkpoint(out / "proseg" / "last.pt")["history"] == before
    assert again.results["proseg"].rows == compared[0].results["proseg"].rows


def test_compare_command_writes_markdown_and_json(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    result = CliRunner().invoke(cli, [
        "compare", "--images", "24", "--image-size", "16", "--steps", "2", "--samples", "4", "--device", "cpu",
        "--methods", "cm_pixel,majority_vote", "--config", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "cm_pixel" / "best.pt").is_file()
    assert "| majority_vote | personalised |" in (tmp_path / "out" / "comparison.md").read_text()
    assert "oracle" in json.loads((tmp_path / "out" / "comparison.json").read_text())["methods"]


def test_compare_command_takes_a_preset_under_the_config_file(tmp_path):
    """--preset paper sets what the config file leaves out (here the released start of q(tau | r) and
    the prior-sampling concentration); the file's keys win (the small backbone, the tiny widths)."""
    (tmp_path / "tiny.json").write_text(json.dumps({**TINY, "backbone": "small", "depth": 2}))
    result = CliRunner().invoke(cli, [
        "compare", "--preset", "paper", "--images", "24", "--image-size", "16", "--steps", "1", "--samples", "4",
        "--device", "cpu", "--methods", "proseg", "--config", str(tmp_path / "tiny.json"),
        "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    config = read_checkpoint(tmp_path / "out" / "proseg" / "best.pt")["config"]
    assert config["tau_init_concentration"] == 1.0 and config["alpha_star"] == 1.0 and config["z_head"] == "per_rater"
    assert config["backbone"] == "small" and config["image_size"] == 16


def test_compare_command_rejects_bad_input(tmp_path):
    bad = CliRunner().invoke(cli, ["compare", "--methods", "proseg,nope", "--out", str(tmp_path)])
    assert bad.exit_code == 2 and "nope" in bad.output
    mixed = CliRunner().invoke(cli, ["compare", "--data", str(tmp_path / "m.json"), "--images", "30"])
    assert mixed.exit_code == 2 and "--images" in mixed.output
    few = CliRunner().invoke(cli, ["compare", "--images", "20", "--image-size", "16", "--samples", "3",
                                   "--out", str(tmp_path / "few")])
    assert few.exit_code == 2 and "at least 4 samples" in few.output
    # the folder was created, probed and locked before any work; nothing else was written into it
    assert [path.name for path in (tmp_path / "few").iterdir()] == [".lock"]


def test_train_command_trains_a_compared_method(tmp_path):
    (tmp_path / "tiny.json").write_text(json.dumps(TINY))
    result = CliRunner().invoke(cli, ["train", "--method", "cm_global", "--steps", "2", "--image-size", "16",
                                      "--config", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "run"),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert read_checkpoint(tmp_path / "run" / "best.pt")["method"] == "cm_global"
    refused = CliRunner().invoke(cli, ["train", "--method", "staple", "--out", str(tmp_path / "no")])
    assert refused.exit_code == 2 and "staple" in refused.output


def test_over_seeds_gives_means_and_spreads():
    def result(value: float) -> MethodResult:
        row = {"ged": value, "dice_soft": value, "dice_max": value, "dice_match": value, "dice_mean": value,
               "dice_rater": [value, 2 * value]}
        per_case = {"personalised": {"ged": [value, value]}}
        styles = {"own_best": 10 * value, "margin": value, "size_r": np.nan if value == 0.2 else value}
        return MethodResult("trained", {"personalised": row}, per_case, [[0.0, value], [value, 0.0]], 10.0, 0.5,
                            styles=styles)

    merged = over_seeds([result(0.2), result(0.4), result(0.6)])
    assert merged.rows["personalised"]["ged"] == pytest.approx(0.4)
    assert merged.rows["personalised"]["dice_rater"] == pytest.approx([0.4, 0.8])
    assert merged.spread["personalised"]["ged"] == pytest.approx(0.2)  # sample sd of 0.2, 0.4, 0.6
    assert merged.per_case["personalised"]["ged"] == pytest.approx([0.4, 0.4])
    assert merged.train_seconds == 30.0 and merged.empty_share == 0.5
    assert merged.styles == pytest.approx({"own_best": 4.0, "margin": 0.4, "size_r": 0.5})  # NaN left out


def test_race_picks_the_rate_with_the_best_validation_dice_and_trains_every_seed(tiny_set, tmp_path):
    slices, _ = tiny_set
    config = tiny_config(steps=2).fitted_to(slices)
    comparison = compare(slices, config, ["unet_pooled"], tmp_path, num_samples=4, progress=False,
                         log=lambda _: None, seeds=[0, 1], lr_grid=[1e-5, 3e-3])
    result = comparison.results["unet_pooled"]
    assert set(result.lr_scores) == {"1e-05", "0.003"}
    assert result.lr == max((float(rate) for rate in result.lr_scores), key=lambda rate: result.lr_scores[f"{rate:g}"])
    assert result.seeds == [0, 1] and set(result.spread) == {"personalised", "prior"}
    for run in ("lr1e-05_seed0", "lr0.003_seed0", f"lr{result.lr:g}_seed1"):
        assert (tmp_path / "unet_pooled" / run / "best.pt").is_file()
    assert " +- " in comparison.markdown() and "seeds 0, 1" in comparison.markdown()


def test_a_rate_given_per_method_replaces_the_grid_for_that_method_only(tiny_set, tmp_path):
    slices, _ = tiny_set
    config = tiny_config(steps=1).fitted_to(slices)
    comparison = compare(slices, config, ["unet_pooled", "cm_global"], tmp_path, num_samples=4, progress=False,
                         log=lambda _: None, seeds=[0, 1], lr_grid=[1e-5, 3e-3], method_lr={"cm_global": 7e-4})
    fixed, gridded = comparison.results["cm_global"], comparison.results["unet_pooled"]
    assert fixed.lr == 7e-4 and fixed.lr_scores == {} and set(gridded.lr_scores) == {"1e-05", "0.003"}
    assert sorted(path.name for path in (tmp_path / "cm_global").iterdir()) == ["lr0.0007_seed0", "lr0.0007_seed1"]
    assert read_checkpoint(tmp_path / "cm_global" / "lr0.0007_seed1" / "best.pt")["config"]["lr"] == 7e-4
    assert "[1e-05, 0.003]; given: cm_global 0.0007" in comparison.markdown()
    assert comparison.settings["method_lr"] == {"cm_global": 7e-4}


def test_rates_per_method_are_parsed_and_checked(tmp_path):
    assert parse_method_lr("dpersona=3e-3, unet_pooled=0.01") == {"dpersona": 0.003, "unet_pooled": 0.01}
    assert parse_method_lr("") == {}
    for spec, problem in [("dpersona", "not METHOD=RATE"), ("dpersona=fast", "not METHOD=RATE")]:
        with pytest.raises(ConfigError, match=problem):
            parse_method_lr(spec)
    for rates, problem in [({"tab": 1e-3}, "not a trained method"), ({"staple": 1e-3}, "not a trained method"),
                           ({"proseg": 0.0}, "positive"), ({"proseg": float("nan")}, "positive")]:
        with pytest.raises(ConfigError, match=problem):
            check_method_lr(rates, ["proseg", "staple"])
    refused = CliRunner().invoke(cli, ["compare", "--methods", "proseg", "--method-lr", "tab=1e-3",
                                       "--out", str(tmp_path / "out")])
    assert refused.exit_code == 2 and "'tab' is not a trained method" in refused.output
    assert not (tmp_path / "out").exists()  # refused before anything was written
    malformed = CliRunner().invoke(cli, ["compare", "--method-lr", "proseg:1e-3"])
    assert malformed.exit_code == 2 and "not METHOD=RATE" in malformed.output


def test_compare_scores_each_case_volume_as_evaluate_does():
    """Two cases of two 4x4 slices, one rater. Case c1: 4 pixels on slice 0 predicted exactly,
    slice 1 empty in both: one volume of Dice 1. Case c2: 2 pixels on slice 0, nothing predicted:
    Dice 0, and its personalised predictions are empty. Per case: empty share 1/2 (per slice 3/4)."""
    annotations = np.zeros((4, 1, 4, 4), np.int64)
    annotations[0, 0, :2, :2] = 1
    annotations[2, 0, 0, :2] = 1
    prediction = np.zeros((4, 1, 4, 4), np.float32)
    prediction[0] = annotations[0]
    slices = SliceSet(np.zeros((4, 1, 4, 4), np.float32), annotations, np.ones((4, 1), bool), ["A"],
                      ["background", "lesion"], ["c1", "c1", "c2", "c2"], ["c1", "c1", "c2", "c2"])
    result = score_predictions(slices, Predictions(prediction, np.repeat(prediction, 2, axis=1)), "paper", "trained")
    assert result.per_case["personalised"]["dice_mean"] == pytest.approx([1.0, 0.0])
    assert result.per_case["prior"]["dice_match"] == pytest.approx([1.0, 0.0])
    assert result.rows["personalised"]["dice_mean"] == pytest.approx(0.5)
    assert result.empty_share == pytest.approx(0.5)


def test_compare_scores_how_well_the_styles_keep_apart():
    """Rater A outlines 2 pixels, rater B 6 (the first 2 shared). Predictions in each rater's own
    style: own style best 2 of 2, margin 1 - 0.5, sizes correlate; the two styles swapped: the reverse."""
    annotations = np.zeros((1, 2, 4, 4), np.int64)
    annotations[0, 0].flat[:2] = 1
    annotations[0, 1].flat[:6] = 1
    slices = SliceSet(np.zeros((1, 1, 4, 4), np.float32), annotations, np.ones((1, 2), bool), ["A", "B"],
                      ["background", "lesion"], ["test"], ["c1"])
    own = annotations.astype(np.float32)
    kept = score_predictions(slices, Predictions(own, own), "paper", "trained").styles
    assert kept == pytest.approx({"own_best": 2, "margin": 1 - 0.5, "size_r": 1.0})
    swapped = own[:, ::-1].copy()
    crossed = score_predictions(slices, Predictions(swapped, swapped), "paper", "trained").styles
    assert crossed == pytest.approx({"own_best": 0, "margin": 0.5 - 1, "size_r": -1.0})
