from setuptools import setup

setup(
    name="proseg-pyro",
    version="0.1.0",
    description="Probabilistic multi-rater medical image segmentation (ProSeg) in Pyro",
    python_requires=">=3.10",
    packages=["proseg_pyro", "proseg_pyro.data", "proseg_pyro.data.formats", "proseg_pyro.baselines", "proseg_pyro.cli",
              "proseg_pyro.benchmarks"],
    package_dir={"proseg_pyro.cli": "cli", "proseg_pyro.benchmarks": "benchmarks"},
    install_requires=[
        "torch>=2.4",  # torch.amp.custom_fwd, is_autocast_enabled(device_type)
        "pyro-ppl>=1.9",
        "numpy",
        "scipy",
        "SimpleITK>=2.2",
        "click>=8.0",
        "tqdm",
        "matplotlib",
        "h5py",
    ],
    extras_require={"test": ["pytest>=7"]},
    entry_points={"console_scripts": ["proseg-pyro=proseg_pyro.cli.main:main"]},
)
