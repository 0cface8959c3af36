# CPU image of the app. Weights are mounted at run time: docker run -p 7860:7860 -v $PWD/weights:/app/weights sam-age
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 GRADIO_SERVER_NAME=0.0.0.0
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY requirements.txt .
RUN pip install -r requirements.txt

COPY sam/ sam/
COPY app.py .
COPY assets/ assets/
COPY weights/README.md weights/README.md

EXPOSE 7860
CMD ["python", "app.py", "--host", "0.0.0.0", "--port", "7860"]
