"""tfcf: TensorFlow 2 collaborative filtering (Mult-VAE, DeepRec, MF)."""

from setuptools import setup

setup(
    name="tfcf",
    version="0.1.0",
    description="TensorFlow 2 toolkit for collaborative filtering: Mult-VAE, DeepRec, matrix factorization",
    python_requires=">=3.10,<3.14",
    packages=["data", "training", "vae", "deeprec", "mf", "baselines", "serving", "experiments", "cli"],
    py_modules=["main"],
    # Ranges whose two ends CI installs (constraints/: TensorFlow 2.18.1 on Python 3.11 with Horovod, the newest
    # TensorFlow on Python 3.13); the upper bounds stop at releases nobody here has run.
    install_requires=[
        "tensorflow>=2.18.1,<2.22",
        "keras>=3.15.1,<3.16",
        "numpy>=2.0.2,<2.6",
        "scipy>=1.17.1,<1.19",
        "pandas>=3.1.1,<3.2",
        "pyarrow>=26.0.1,<27",
        "absl-py>=2.5.1,<2.6",
        "tensorboard>=2.18.0,<2.22",
        "matplotlib>=3.11.2,<3.12",
        # --tune: TPE sampling, pruning and a resumable SQLite study.
        "optuna>=5.0.0,<5.2",
        # --config files and presets (TOML): read with tomllib (tomli before Python 3.11), written with tomli-w.
        "tomli>=2.2.1,<2.3; python_version < '3.11'",
        "tomli-w>=1.2.0,<1.3",
    ],
    extras_require={
        # nbclient runs the notebooks in CI (tests/test_notebooks.py) in an ipykernel "python3" kernel.
        "test": ["pytest>=9.0.3,<9.3", "nbclient>=0.11.0,<0.12", "nbformat>=5.11.1,<5.12", "ipykernel>=7.4.0,<7.5"],
        # Horovod 0.28.1 (its last release) builds only against TensorFlow 2.18: scripts/install_horovod.sh builds it
        # from source and refuses a newer TensorFlow.
        "horovod": ["horovod==0.28.1", "tensorflow==2.18.1"],
    },
    entry_points={"console_scripts": ["tfcf=main:run"]},
)
