"""The demo's sample service: a small FastAPI shop served by uvicorn."""
import sys

import uvicorn
from fastapi import Depends, FastAPI

app = FastAPI()

PRICES = {42: 9.5, 7: 120.0}


def current_user(token: str = ""):
    return {"name": "alice" if token else "guest"}


def price_order(order_id: int, qty: int, coupon: str = ""):
    unit = PRICES.get(order_id, 1.0)
    total = unit * qty
    if coupon == "HALF":
        total = total / 2  # DEMO:discount
    return {"order_id": order_id, "qty": qty, "total": total}


@app.get("/health")
def health():
    return {"ok": True}


@app.get("/orders/{order_id}")
async def get_order(order_id: int, qty: int = 1, coupon: str = "",
                    user=Depends(current_user)):
    order = price_order(order_id, qty, coupon)
    order["user"] = user["name"]
    return order


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
