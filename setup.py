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
    "onnxruntime": ["onnxruntime>=1.17"],  # 1.19.2 is the last for Python 3.8
    "openvino": ["openvino>=2024.0"],
    "tensorflow": ["tensorflow-cpu>=2.15"],
    "tensorflow-gpu": ["tensorflow[and-cuda]>=2.15"],
    "tensorrt": ["tensorrt>=8.6", "cuda-python>=12.0", "onnx>=1.15"],
    "demo": ["onnxruntime>=1.17", "onnx>=1.15"],
    # optional: ImageNet decoding/resizing through OpenCV (same bytes as Pillow + the NumPy code, faster)
    "opencv": ["opencv-python-headless>=4.8"],
    "test": ["pytest>=7", "opencv-python-headless>=4.8", "onnx>=1.15"],
}
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
