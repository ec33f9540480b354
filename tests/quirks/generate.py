"""Write the quirk tables: small CSV files, each with one thing real tables do, and a dataset file for each.

Run from anywhere (``python tests/quirks/generate.py``); the output is byte-for-byte reproducible (seeded,
and the compressed files carry no timestamp), so the files are committed and the tests read them as a user's
files would be read. Each ``<name>.yaml`` is a dataset file a study can use as it is.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

HERE = Path(__file__).parent
ROWS = 300
RANDOM = {"by": "random", "validation": 0.2, "test": 0.2, "seed": 0}


def base(rng: np.random.Generator, rows: int = ROWS) -> pd.DataFrame:
    """A small regression table: price from size, rooms and a town."""
    size = rng.uniform(30, 200, rows).round(1)
    rooms = rng.integers(1, 7, rows)
    town = rng.choice(["north", "south", "east", "west"], rows)
    noise = rng.normal(0, 10, rows)
    price = 2.0 * size + 15 * rooms + pd.Series(town).map({"north": 40, "south": 0, "east": 20, "west": 10}) + noise
    return pd.DataFrame({"size": size, "rooms": rooms, "town": town, "price": price.round(2)})


def spec(name: str, **changes: object) -> dict:
    return {
        "name": name,
        "path": f"{name}.csv",
        "task": "regression",
        "target": "price",
        "features": {"categorical": ["town"]},
        "split": RANDOM,
    } | changes


def quirks(rng: np.random.Generator) -> dict[str, tuple[pd.DataFrame | bytes, dict]]:
    """Per quirk, its table (or the file's bytes) and its dataset declaration."""
    out: dict[str, tuple[pd.DataFrame | bytes, dict]] = {}

    frame = base(rng)
    frame["years_owned"] = pd.array(rng.integers(0, 30, ROWS), dtype="Int64")
    frame.loc[rng.choice(ROWS, 30, replace=False), "years_owned"] = pd.NA
    out["integer_gaps"] = (frame, spec("integer_gaps"))

    text = base(rng).to_csv(index=False).splitlines()
    for line in range(5, len(text), 17):
        cells = text[line].split(",")
        cells[line % 2] = "?" if line % 3 else "NA"
        text[line] = ",".join(cells)
    out["na_strings"] = (("\n".join(text) + "\n").encode(), spec("na_strings", read={"na_values": ["?"]}))

    frame = base(rng).drop(columns="price")
    frame["churned"] = np.where(rng.uniform(size=ROWS) < 0.15 + 0.3 * (frame["town"] == "east"), "Yes", "No")
    out["yes_no"] = (
        frame,
        spec("yes_no", task="binary", target="churned", positive_when={"equals": "Yes"}),
    )

    frame = base(rng).assign(record=range(1000, 1000 + ROWS))
    frame.index = range(1, ROWS + 1)
    out["row_index"] = (frame.to_csv().encode(), spec("row_index"))  # pandas' index: a column with no name

    frame = base(rng)
    frame["price_in_cents"] = frame["price"] * 100 + rng.normal(0, 1, ROWS)
    out["leak"] = (frame, spec("leak"))

    out["all_nan"] = (base(rng).assign(comment=np.nan), spec("all_nan"))
    out["constant"] = (base(rng).assign(country="NL", version=3), spec("constant"))

    many = 2600
    frame = base(rng, many)
    frame["street"] = [f"street {i}" for i in rng.integers(0, 2400, many)]
    out["high_cardinality"] = (frame, spec("high_cardinality", features={"categorical": ["town", "street"]}))

    frame = base(rng).rename(columns={"size": "size[m2]", "rooms": "rooms<5]"})
    frame["town"] = frame["town"].str.replace("north", "north[1]")
    out["odd_names"] = (frame, spec("odd_names"))

    frame = base(rng)
    frame["town"] = frame["town"].map({"north": "Nörd", "south": "Süd", "east": "Öst", "west": "Wést"})
    latin = frame.to_csv(index=False, sep=";", decimal=",").encode("latin-1")
    out["semicolon_latin1"] = (
        latin,
        spec("semicolon_latin1", read={"separator": ";", "encoding": "latin-1", "decimal": ","}),
    )

    out["compressed"] = (base(rng), spec("compressed", path="compressed.csv.gz"))
    out["zipped"] = (base(rng), spec("zipped", path="zipped.zip"))

    frame = base(rng)
    frame["house"] = rng.integers(0, 60, ROWS)
    out["groups"] = (frame, spec("groups", split=RANDOM | {"group": "house"}))

    frame = base(rng)
    frame["size_per_extra_room"] = (frame["size"] / (frame["rooms"] - 1)).round(2)  # one room: +inf
    frame.loc[[3, 7], "size_per_extra_room"] = -np.inf
    frame.loc[11, "size_per_extra_room"] = 1e39  # beyond float32, the model's number type
    out["infinite"] = (frame, spec("infinite"))
    return out


def write(name: str, table: pd.DataFrame | bytes, path: str) -> None:
    data = table if isinstance(table, bytes) else table.to_csv(index=False).encode()
    target = HERE / path
    if path.endswith(".gz"):
        with target.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as handle:
            handle.write(data)
    elif path.endswith(".zip"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(zipfile.ZipInfo(f"{name}.csv", date_time=(2026, 1, 1, 0, 0, 0)), data)
        target.write_bytes(buffer.getvalue())
    else:
        target.write_bytes(data)


def main() -> None:
    for name, (table, declaration) in quirks(np.random.default_rng(11)).items():
        write(name, table, declaration["path"])
        (HERE / f"{name}.yaml").write_text(yaml.safe_dump(declaration, sort_keys=False))


if __name__ == "__main__":
    main()
