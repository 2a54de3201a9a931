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
    "litert": ["ai-edge-litert>=1.2"],
    "tflite-runtime": ["tflite-runtime>=2.14", "numpy<2"],
    "onnxruntime": ["onnxruntime>=1.17"],
    "openvino": ["openvino>=2024.0"],
    "tensorflow": ["tensorflow-cpu>=2.15"],
    "tensorflow-gpu": ["tensorflow[and-cuda]>=2.15"],
    "tensorrt": ["tensorrt>=8.6", "cuda-python>=12.0", "onnx>=1.15"],
    "demo": ["onnxruntime>=1.17", "onnx>=1.15"],
    # optional: ImageNet resizing through cv2.resize (same bytes as the NumPy code, ~20x faster)
    "opencv": ["opencv-python-headless>=4.8"],
    "test": ["pytest>=7", "opencv-python-headless>=4.8", "onnx>=1.15"],
}
EXTRAS["cpu"] = sorted({*EXTRAS["litert"], *EXTRAS["onnxruntime"], *EXTRAS["openvino"], *EXTRAS["demo"],
                          *EXTRAS["opencv"]})

setup(
    name="mlperf-edge-harness",
    version="0.1.0",
    description="MLPerf LoadGen system-under-test plugins for edge accelerators and CPUs",
    long_description=open("README.rst").read() if __import__("os").path.exists("README.rst") else "",
    python_requires=">=3.10",
    packages=[],
    install_requires=["mlcommons-loadgen>=6.0", "numpy>=1.24", "pillow>=10"],
    extras_require=EXTRAS,
)
