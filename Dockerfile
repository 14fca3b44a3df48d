FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# WeasyPrint (the monthly PDF report) draws text with Pango; fonts for it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

COPY . .
# Static files for the admin, served by whitenoise from gunicorn.
RUN DEBUG=true python manage.py collectstatic --no-input -v 0

RUN useradd --system --home /app vectis && mkdir -p /app/var && chown -R vectis /app/var
USER vectis

EXPOSE 8000
CMD ["gunicorn", "vectis.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3"]
