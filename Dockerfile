FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home icbridge && mkdir -p /app/var && chown icbridge /app/var
USER icbridge
EXPOSE 8000
CMD ["gunicorn", "icbridge.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4", "--threads", "4"]
