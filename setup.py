"""tfcf: TensorFlow 2 collaborative filtering (Mult-VAE, DeepRec, MF)."""

from setuptools import setup

setup(
    name="tfcf",
    version="0.1.0",
    description="TensorFlow 2 toolkit for collaborative filtering: Mult-VAE, DeepRec, matrix factorization",
    python_requires=">=3.10,<3.13",
    packages=["data", "training", "vae", "deeprec", "mf", "baselines", "serving", "experiments", "cli"],
    py_modules=["main"],
    install_requires=[
        # 2.18.1 is the last TensorFlow that Horovod 0.28.1 builds against unpatched.
        "tensorflow==2.18.1",
        "keras==3.15.1",
        "numpy==2.0.2",
        "scipy==1.17.1",
        "pandas==3.1.1",
        "pyarrow==26.0.1",
        "absl-py==2.5.1",
        "tensorboard==2.18.0",
        "matplotlib==3.11.2",
        # --tune: TPE sampling, pruning and a resumable SQLite study.
        "optuna==5.0.0",
        # --config files and presets (TOML): read with tomllib (tomli before Python 3.11), written with tomli-w.
        "tomli==2.2.1; python_version < '3.11'",
        "tomli-w==1.2.0",
    ],
    extras_require={
        # nbclient runs the notebooks in CI (tests/test_notebooks.py) in an ipykernel "python3" kernel.
        "test": ["pytest==9.0.3", "nbclient==0.11.0", "nbformat==5.11.1", "ipykernel==7.4.0"],
        # Built from source against the installed TensorFlow: see scripts/install_horovod.sh.
        "horovod": ["horovod==0.28.1"],
    },
    entry_points={"console_scripts": ["tfcf=main:run"]},
)
