# GPU image: the official TensorFlow 2.21 CUDA image plus this project (see README, "GPU runs").
#   docker build -t mental-maps .
#   docker run --gpus all -v /path/to/scans:/scans:ro -v "$PWD/data:/app/data" -v "$PWD/runs:/app/runs" mental-maps \
#       python scripts/train.py config_rnn/adni.yaml
FROM tensorflow/tensorflow:2.21.0-gpu

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=1

WORKDIR /app

# Dependencies first, so editing the code does not reinstall them. The image's TensorFlow already
# satisfies the tensorflow==2.21.0 pin; the rest comes from requirements.txt, then the package itself.
COPY requirements.txt pyproject.toml ./
COPY bruno ./bruno
RUN grep -v '^-e ' requirements.txt > /tmp/requirements-deps.txt \
    && pip install --no-cache-dir -r /tmp/requirements-deps.txt \
    && pip install --no-cache-dir --no-deps -e . \
    && rm /tmp/requirements-deps.txt

COPY scripts ./scripts
COPY config_rnn ./config_rnn
COPY tests ./tests
COPY README.md BENCHMARKS.md ./

# Data and runs are mounted from the host (-v), never baked into the image.
RUN mkdir -p data runs
CMD ["python", "scripts/train.py", "--help"]
