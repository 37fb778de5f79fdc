"""sg-detr-jax: SG-DETR for moment retrieval and highlight detection in JAX / Flax."""

from setuptools import find_packages, setup

setup(
    name="sg-detr-jax",
    version="0.1.0",
    description="SG-DETR (Saliency-Guided DETR) for moment retrieval and highlight detection in JAX",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["sg_detr_jax*", "data_prep*", "launch*", "configs*"]),
    install_requires=[
        "jax>=0.10.2,<0.11",
        "flax>=0.12.8,<0.13",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "numpy>=2.0,<3",
        "scipy>=1.13,<2",
        "tensorflow-datasets>=4.9.10,<5",
        "array-record>=0.8",
        "ml-collections>=1.1.0,<2",
        "absl-py>=2.1,<3",  # entry points: absl flags + ml_collections' config_flags
        "grain>=0.2.18,<0.3",
        "importlib_resources",
        "tqdm",
        "matplotlib",
        "tensorboardX",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6"],
        # Exact pin: a looser torch requirement downloads a multi-GB CUDA build.
        "torch": ["torch==2.13.0", "safetensors>=0.4"],
        # InterVid-MR labelling on a cluster (TFDS Beam builder; DirectRunner in the tests).
        "beam": ["apache-beam>=2.60,<3"],
        "cuda": ["jax[cuda12]>=0.10.2,<0.11"],
        "tpu": ["jax[tpu]>=0.10.2,<0.11"],
    },
)
