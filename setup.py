"""Install the harness's dependencies; the harness itself runs from this checkout.

``pip install -e '.[litert,onnxruntime]'`` installs LoadGen, NumPy, Pillow and
the runtimes named as extras. The project's top-level packages (``sut``,
``backends``, ``datasets``, ``profiles``) are deliberately not installed into
site-packages: a top-level ``datasets`` there would shadow Hugging Face's
``datasets`` for every other program in the environment. ``run.py`` puts this
checkout first on ``sys.path`` instead (see datasets/__init__.py).
"""

from setuptools import setup

EXTRAS = {
    # LiteRT: ai-edge-litert where it has wheels (Python 3.9+); on Python 3.8 its predecessor
    # tflite-runtime (2.5-2.14; NumPy 1.x builds), which the backend uses the same way
    "litert": ["ai-edge-litert>=1.2; python_version >= '3.9'",
               "tflite-runtime>=2.5; python_version < '3.9'", "numpy<2; python_version < '3.9'"],
    "tflite-runtime": ["tflite-runtime>=2.5", "numpy<2"],  # wheels for Python 3.7-3.11
    # onnx: int8 calibration (backends/int8_calibration.py) reads and writes the model with it
    "onnxruntime": ["onnxruntime>=1.17", "onnx>=1.15"],  # 1.19.2 is the last for Python 3.8
    "openvino": ["openvino>=2024.0"],
    "tensorflow": ["tensorflow-cpu>=2.15"],
    "tensorflow-gpu": ["tensorflow[and-cuda]>=2.15"],
    # TensorRT by the CUDA major of the driver: cuda-python 13 needs a CUDA 13 driver, JetPack 6 and
    # most GPUs run CUDA 12 ones. tensorrt-cu12 starts at 10.0 (8.6 is 'tensorrt==8.6.1'; JetPack
    # ships its own: a venv with --system-site-packages). onnxruntime + onnx: int8 calibration to a
    # Q/DQ copy (every TensorRT version); onnxconverter-common: fp16 ONNX copies for TensorRT 11.
    "tensorrt-cu12": ["tensorrt-cu12>=10.0,<12", "cuda-python>=12,<13", "onnx>=1.15", "onnxruntime>=1.17",
                      "onnxconverter-common>=1.16"],
    "tensorrt-cu13": ["tensorrt-cu13>=10.13,<12", "cuda-python>=13,<14", "onnx>=1.15", "onnxruntime>=1.17",
                      "onnxconverter-common>=1.16"],
    "demo": ["onnxruntime>=1.17", "onnx>=1.15"],
    # PyTorch backend (backends/pytorch.py): torch.export (.pt2) and torch.compile need 2.1. Pin the
    # CPU build explicitly where a plain 'torch' would fetch the multi-GB CUDA one (CI: torch==2.13.0)
    "pytorch": ["torch>=2.1"],
    # report.html's plots (sut/plots.py, Agg backend); without it the report has its tables only
    "report": ["matplotlib>=3.5"],
    # LoadGen over the network (sut/network): gRPC with raw bytes, no generated code; 1.70 is the
    # last grpcio for Python 3.8 (a SUT node needs only NumPy, its runtime and this)
    "network": ["grpcio>=1.70"],
    # optional: ImageNet decoding/resizing through OpenCV (same bytes as Pillow + the NumPy code, faster)
    "opencv": ["opencv-python-headless>=4.8"],
    # onnxconverter-common: the TensorRT 11 fp16 tests; tf2onnx: the KWS float ONNX for the int8 test
    "test": ["pytest>=7", "opencv-python-headless>=4.8", "onnx>=1.15", "onnxconverter-common>=1.16",
             "tf2onnx>=1.17; python_version >= '3.9'", "matplotlib>=3.5", "grpcio>=1.70"],
}
EXTRAS["tensorrt"] = EXTRAS["tensorrt-cu12"]  # the common case; '.[tensorrt-cu13]' for CUDA 13 drivers
EXTRAS["cpu"] = sorted({*EXTRAS["litert"], *EXTRAS["onnxruntime"], *EXTRAS["openvino"], *EXTRAS["demo"],
                          *EXTRAS["opencv"]})

setup(
    name="mlperf-edge-harness",
    version="0.1.0",
    description="MLPerf LoadGen system-under-test plugins for edge accelerators and CPUs",
    long_description=(open("README.rst", encoding="utf-8").read()  # not the locale's: C on old systems
                      if __import__("os").path.exists("README.rst") else ""),
    python_requires=">=3.8",
    packages=[],
    install_requires=[
        # 6.0.16: the first with the v6.x round's RNG seeds (older trees fail the checker). Wheels for
        # x86-64 CPython 3.9-3.13; on Python 3.8 and on aarch64 pip builds the sdist (C++ compiler
        # and Python headers: README)
        "mlcommons-loadgen>=6.0.16",
        "numpy>=1.19.5",  # 1.19.5: what openvino 2021.4.2 (NCS2, Python <= 3.9) pins; NumPy 2.x too
        "pillow>=9.0",  # wheels before 9.0 bundle IJG libjpeg 9, which decodes JPEGs to other pixels
        "tomli>=2.0.1; python_version < '3.11'",  # tomllib before 3.11
    ],
    extras_require=EXTRAS,
)
