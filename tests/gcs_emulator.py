"""A local GCS for tests: `gcp-storage-emulator` plus a TLS front for TensorFlow.

tensorstore (orbax's arrays) talks to the emulator directly through
`TENSORSTORE_GCS_HTTP_URL`. TensorFlow's GCS filesystem (tf.io.gfile, hence
etils.epath, clu's TensorBoard writer, tf.data) has its endpoints compiled in
(https://www.googleapis.com, https://storage.googleapis.com), so it reaches the
emulator through a proxy: libcurl honours `HTTPS_PROXY`, the proxy answers
CONNECT for those two hosts only, terminates TLS with a throwaway certificate
that `CURL_CA_BUNDLE` trusts, and forwards each request to the emulator. Any
other host is refused, so nothing here can reach the real GCS.

The emulator runs in memory (on disk it cannot hold both the folder marker
'a/' and the object 'a/b') in a subprocess, with fixes for what TF and
tensorstore trip over; see `_serve`. Needs the `openssl` command for the
certificate. Run as a script it prints one JSON line with its ports and serves
until its stdin closes (the test process stopped it or died).
"""

import contextlib
import http.client
import http.server
import json
import pathlib
import socketserver
import ssl
import subprocess
import sys
import threading
import urllib.parse
import urllib.request

_GCS_HOSTS = ('www.googleapis.com', 'storage.googleapis.com')


def _read_body(handler: http.server.BaseHTTPRequestHandler) -> bytes:
  if handler.headers.get('Transfer-Encoding', '').lower() == 'chunked':
    body = b''
    while True:
      size = int(handler.rfile.readline().split(b';')[0], 16)
      if not size:
        while handler.rfile.readline() not in (b'\r\n', b'\n', b''):
          pass
        return body
      body += handler.rfile.read(size)
      handler.rfile.readline()
  return handler.rfile.read(int(handler.headers.get('Content-Length', 0)))


class _Proxy(http.server.BaseHTTPRequestHandler):
  """CONNECT to a GCS host -> TLS -> plain HTTP to the emulator."""

  protocol_version = 'HTTP/1.1'
  disable_nagle_algorithm = True
  emulator: str  # host:port, set on the subclass
  tls: ssl.SSLContext

  def do_CONNECT(self):  # pylint: disable=invalid-name
    host, _, port = self.path.partition(':')
    if host not in _GCS_HOSTS or port != '443':
      self.send_error(403, f'gcs_emulator proxies only {_GCS_HOSTS}')
      return
    self.send_response(200, 'Connection established')
    self.end_headers()
    self.request = self.tls.wrap_socket(self.connection, server_side=True)
    self.setup()  # rfile, wfile (unbuffered: '100 Continue' must go out now)
    self.close_connection = False
    while not self.close_connection:
      self.handle_one_request()

  def _forward(self):
    if not isinstance(self.connection, ssl.SSLSocket):
      self.send_error(403, 'gcs_emulator forwards only tunnelled GCS requests')
      return
    body = _read_body(self)
    host = self.headers['Host']
    headers = {k: v for k, v in self.headers.items()
               if k.lower() not in ('host', 'expect', 'transfer-encoding',
                                    'content-length', 'connection')}
    headers['Host'] = self.emulator
    conn = http.client.HTTPConnection(self.emulator, timeout=60)
    conn.request(self.command, self.path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    self.send_response(resp.status, resp.reason)
    for k, v in resp.getheaders():
      if k.lower() in ('content-length', 'connection', 'transfer-encoding'):
        continue
      if k.lower() == 'location':  # upload sessions: keep them in the tunnel
        v = v.replace(f'http://{self.emulator}/', f'https://{host}/')
      self.send_header(k, v)
    self.send_header('Content-Length', str(len(data)))
    self.end_headers()
    if self.command != 'HEAD':
      self.wfile.write(data)

  do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = do_HEAD = _forward

  def log_message(self, *args):
    pass


class _ProxyServer(socketserver.ThreadingTCPServer):
  daemon_threads = True
  request_queue_size = 256


def _certificate(directory: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
  cert, key = directory / 'gcs_cert.pem', directory / 'gcs_key.pem'
  subprocess.run(
      ['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
       '-subj', f'/CN={_GCS_HOSTS[0]}',
       '-addext', 'subjectAltName=' + ','.join(f'DNS:{h}' for h in _GCS_HOSTS),
       '-keyout', str(key), '-out', str(cert)],
      check=True, capture_output=True)
  return cert, key


def _serve(cert: str, key: str, bucket: str):
  """Runs emulator (holding `bucket`) and proxy until stdin closes."""
  import logging  # pylint: disable=g-import-not-at-top
  from gcp_storage_emulator import server  # pylint: disable=g-import-not-at-top
  from gcp_storage_emulator.handlers import objects  # pylint: disable=g-import-not-at-top
  logging.disable(logging.CRITICAL)  # the emulator logs every request
  read_data = server._read_data  # pylint: disable=protected-access

  def _read_data(handler, query):
    # The emulator crashes on an empty uploadType=media body (TF's directory markers).
    data = read_data(handler, query)
    return b'' if data is None and query.get('uploadType') == ['media'] else data

  server._read_data = _read_data  # pylint: disable=protected-access
  download = objects.download

  def _download(request, response, storage, *args, **kwargs):
    # tensorstore reads an object's generation from this header (the emulator
    # leaves it out), e.g. when OCDBT re-reads its manifest.
    download(request, response, storage, *args, **kwargs)
    if response.status in (200, 206):
      obj = storage.get_file_obj(request.params['bucket_name'],
                                 request.params['object_id'])
      response['x-goog-generation'] = obj['generation']

  objects.download = _download
  # The emulator serves one request at a time; tensorstore opens dozens of
  # connections at once, and a full listen queue drops them for a second.
  http.server.HTTPServer.request_queue_size = 256
  emulator = server.create_server('127.0.0.1', 0, in_memory=True,
                                   default_bucket=bucket)
  emulator.start()
  emu_port = emulator._api._httpd.server_address[1]  # pylint: disable=protected-access
  tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  tls.load_cert_chain(cert, key)
  handler = type('Proxy', (_Proxy,), {'emulator': f'127.0.0.1:{emu_port}',
                                      'tls': tls})
  proxy = _ProxyServer(('127.0.0.1', 0), handler)
  threading.Thread(target=proxy.serve_forever, daemon=True).start()
  print(json.dumps({'emulator': emu_port, 'proxy': proxy.server_address[1]}),
        flush=True)
  sys.stdin.read()
  proxy.shutdown()
  emulator.stop()


@contextlib.contextmanager
def running(directory: pathlib.Path, bucket: str):
  """Serves a local GCS holding an empty `bucket`; yields the environment to reach it.

  The dict holds the variables to add: set them in os.environ before the first
  gs:// access of this process, and give `os.environ | env` to a subprocess
  (train.py, eval.py, ...). `directory` receives the throwaway certificate.
  """
  cert, key = _certificate(directory)
  proc = subprocess.Popen([sys.executable, __file__, str(cert), str(key), bucket],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
  try:
    line = proc.stdout.readline()  # printed once both servers listen
    if not line:
      raise RuntimeError(f'the GCS emulator did not start (exit code {proc.wait()})')
    ports = json.loads(line)
    emulator = f'http://127.0.0.1:{ports["emulator"]}'
    proxy = f'http://127.0.0.1:{ports["proxy"]}'
    nowhere = '127.0.0.1:1'  # a refused port: any metadata-server lookup fails at once
    yield {
        # Any token does for the emulator; with one, TF and tensorstore look
        # for no credentials. google-cloud-storage (orbax) goes anonymous when
        # STORAGE_EMULATOR_HOST is set.
        'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'emulator',
        'STORAGE_EMULATOR_HOST': emulator,
        'TENSORSTORE_GCS_HTTP_URL': emulator,
        'NO_GCE_CHECK': 'true',
        'GCE_METADATA_HOST': nowhere,  # TF, google-auth
        'GCE_METADATA_IP': nowhere,  # google-auth
        'GCE_METADATA_ROOT': nowhere,  # tensorstore
        # libcurl reads the lower-case names first, Python both.
        'HTTPS_PROXY': proxy,
        'https_proxy': proxy,
        'NO_PROXY': '127.0.0.1,localhost',
        'no_proxy': '127.0.0.1,localhost',
        'CURL_CA_BUNDLE': str(cert),
        # TF retries a failed request 10 times over minutes; fail a test in seconds.
        'GCS_RETRY_CONFIG_MAX_RETRIES': '2',
        # TF fills a 64 MiB buffer per opened file (~70 ms here); read what is asked.
        'GCS_READ_CACHE_BLOCK_SIZE_MB': '0',
    }
  finally:
    proc.stdin.close()
    try:
      proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
      proc.kill()
      proc.wait()


if __name__ == '__main__':
  _serve(*sys.argv[1:4])


def objects(env: dict, url: str) -> dict[str, bytes]:
  """Object name (in its bucket) -> content for each object whose URL starts with `url`.

  Read from the emulator's JSON API directly, past TF, tensorstore and the proxy.
  """
  bucket, _, prefix = url.removeprefix('gs://').partition('/')
  api = f'{env["TENSORSTORE_GCS_HTTP_URL"]}/storage/v1/b/{bucket}/o'
  no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
  listing = json.load(no_proxy.open(f'{api}?prefix={urllib.parse.quote(prefix)}'))
  return {o['name']: no_proxy.open(f'{api}/{urllib.parse.quote(o["name"], safe="")}?alt=media').read()
          for o in listing.get('items', [])}
