"""Flask under its threaded development server (werkzeug). Flask keeps
views in app.view_functions under their endpoint names, so a probe must
hook the code, not the name it was registered under.

Routes:
  GET /view/{n}         view function, a line in it (sync handler)
  GET /bp/item/{n}      a blueprint view (blueprint at /bp)
  GET /renamed/{n}      add_url_rule(endpoint="other_name", view_func=plain)
  GET /_debug/state     contract_state.state()
Prints "port N" when serving; exits when stdin closes.
"""
import logging

from flask import Blueprint, Flask, jsonify
from werkzeug.serving import make_server

from contract_state import announce, on_stdin_close, state, watch

app = Flask(__name__)


@app.route("/view/<int:n>")
def view(n):
    doubled = n * 2  # LINE:sync_body
    return jsonify(n=n, doubled=doubled)


bp = Blueprint("bp", __name__)


@bp.route("/item/<int:n>")
def bp_item(n):
    return jsonify(n=n, item=f"item-{n}")


app.register_blueprint(bp, url_prefix="/bp")


def plain(n):
    return jsonify(n=n, renamed=n + 100)


app.add_url_rule("/renamed/<int:n>", endpoint="other_name", view_func=plain)


@app.route("/_debug/state")
def debug_state():
    return jsonify(state())


for _f in (view, bp_item, plain):
    watch(_f.__name__, _f)


if __name__ == "__main__":
    logging.getLogger("werkzeug").setLevel(logging.ERROR)   # no access log
    server = make_server("127.0.0.1", 0, app, threaded=True)
    on_stdin_close(server.shutdown)
    announce(server.server_port)
    server.serve_forever()
