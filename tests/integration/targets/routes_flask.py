"""Flask app for the route-coverage tests."""
from flask import Blueprint, Flask

app = Flask(__name__)
bp = Blueprint("shop", __name__)


@app.route("/")
def index():
    return "index"


@bp.route("/cart", methods=["GET", "POST"])
def cart():
    return "cart"


def report_view():
    return "report"


app.register_blueprint(bp, url_prefix="/shop")
app.add_url_rule("/reports/<int:year>", endpoint="yearly",
                 view_func=report_view)
