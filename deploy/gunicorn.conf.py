"""gunicorn settings of kcm's ``web`` process: ``gunicorn -c deploy/gunicorn.conf.py 'api:create_app()'``
(the Procfile, docker-compose.yml and deploy/supervisord/kcm.conf all use it; a ``--bind`` on the command line
wins over ``bind`` here).

- bind ``127.0.0.1:$PORT`` (8000; ``0.0.0.0:$PORT`` on a Heroku dyno, where ``DYNO`` is set), ``$WEB_CONCURRENCY`` workers (2), access and error log on stdout/stderr;
- HTTPS when ``KCM_TLS_CERT`` and ``KCM_TLS_KEY`` name a PEM certificate (chain) and its key; TLS 1.2+;
- no control socket: gunicorn >= 24 opens ``~/.gunicorn/gunicorn.ctl`` by default, which a second ``web`` on
  the same host would take over (kcm does not use gunicornc).
"""
import os
import ssl

# loopback unless on a Heroku dyno (it sets DYNO), whose router reaches web on 0.0.0.0:$PORT
bind = [f"{'0.0.0.0' if os.environ.get('DYNO') else '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"]
workers = int(os.environ.get("WEB_CONCURRENCY") or "2")
accesslog = "-"
errorlog = "-"
control_socket_disable = True

_cert, _key = os.environ.get("KCM_TLS_CERT", "").strip(), os.environ.get("KCM_TLS_KEY", "").strip()
if bool(_cert) != bool(_key):
    raise RuntimeError("KCM_TLS_CERT and KCM_TLS_KEY: set both (HTTPS) or neither (HTTP)")
if _cert:
    for _name, _path in (("KCM_TLS_CERT", _cert), ("KCM_TLS_KEY", _key)):
        if not os.path.isfile(_path):
            raise RuntimeError(f"{_name} is not a readable file")
    certfile, keyfile = _cert, _key
    # gunicorn's ssl_context hook: the library defaults (TLS 1.2+, no compression) with our certificate
    def ssl_context(config, default_ssl_context_factory):
        context = default_ssl_context_factory()
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

# metrics summed across workers (api/metrics_setup.py: before prometheus_client is imported anywhere) and
# gunicorn's own error/access logs in kcm's format (schema/logs.py, KCM_LOG_FORMAT)
from api.metrics_setup import child_exit, prepare_multiprocess_dir  # noqa: E402,F401 (child_exit: a gunicorn hook)
from schema.logs import gunicorn_logconfig  # noqa: E402

prepare_multiprocess_dir()
logconfig_dict = gunicorn_logconfig()
