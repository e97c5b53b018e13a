# GPU runs: TensorFlow's CUDA image plus this project's requirements.
#   docker build -t mental-maps .
#   docker run --gpus all -v /path/to/scans:/scans -v $PWD/data:/app/data mental-maps \
#       python scripts/preprocess.py config_rnn/adni.yaml --input /scans
FROM tensorflow/tensorflow:2.21.0-gpu
WORKDIR /app
COPY . /app
RUN pip install --no-cache-dir -r requirements.txt
CMD ["python", "-m", "pytest", "-q"]
