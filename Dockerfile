# The app as a CPU container (GPU: build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130).
#
#   docker build -t sam-age .
#   docker run -p 7860:7860 -v $PWD/weights:/app/weights sam-age
#
# Without a checkpoint in the mounted weights/ folder the app downloads it at start (2.3 GB, see weights/README.md;
# an interrupted download resumes on the next start); offline, or with a read-only or broken weights/ mount, it
# still serves the page and says what to do.
FROM python:3.11-slim

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT=7860 HF_HOME=/app/.cache/huggingface
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
# torch first from the CPU (or CUDA) index, so the rest of requirements.txt finds it installed
RUN pip install --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1 && pip install -r requirements.txt

COPY sam/ sam/
COPY web/ web/
COPY app.py ./
COPY assets/ assets/
COPY weights/README.md weights/README.md

RUN useradd --create-home --uid 1000 app && mkdir -p /app/.cache && chown -R app /app/weights /app/.cache
USER app

EXPOSE 7860
# The page is served once the model is loaded; the first start downloads 2.3 GB first: 30 minutes of grace.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30m \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
