# One image for every InfiniTrain process: the API (default), a worker, Flower.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    INFINITRAIN_VAR_DIR=/var/lib/infinitrain

WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt

COPY . .
RUN useradd --system --home-dir /var/lib/infinitrain --create-home infinitrain \
    && python manage.py collectstatic --noinput --verbosity 0 \
    && chown -R infinitrain /var/lib/infinitrain
USER infinitrain

EXPOSE 8080
CMD ["gunicorn", "infinitrain_project.wsgi", "--bind", "0.0.0.0:8080", "--workers", "2", "--threads", "4"]
