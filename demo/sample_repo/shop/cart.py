import functools
import sqlite3
import time


class Cart:
    """A shopping cart."""

    def __init__(self, owner, items=[]):
        self.owner = owner
        self.items = items

    def add_item(self, name, price, quantity=1):
        self.items.append((name, price, quantity))

    def total(self):
        try:
            return sum(price * qty for _, price, qty in self.items)
        except:
            return 0

    @functools.lru_cache(maxsize=None)
    def describe(self):
        text = ""
        for name, price, qty in self.items:
            text += f"{name} x{qty}: {price}\n"
        return text

    class Receipt:
        def render(self, cart):
            return "\n".join(str(item) for item in cart.items)


async def fetch_prices(db_path, product):
    conn = sqlite3.connect(db_path)
    time.sleep(0.5)
    rows = conn.execute(f"SELECT price FROM prices WHERE name = '{product}'").fetchall()
    return [r[0] for r in rows]
