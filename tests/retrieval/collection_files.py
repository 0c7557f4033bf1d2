"""A small collection of every kind of file `spanqa index` reads, and some it must skip, made on the fly."""

from __future__ import annotations

from pathlib import Path

EIFFEL = ("# The Eiffel Tower\n\nThe Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris.\n\n"
          "It is named after the engineer Gustave Eiffel, whose company designed and built the tower.\n")
PARIS = "Paris is the capital of France.\nIt has about two million inhabitants.\n"
CURIE_HTML = ("<html><head><title>Marie Curie</title><style>p {color: red}</style></head><body>"
              "<h1>Marie Curie</h1><p>Marie Curie did pioneering research on radioactivity.</p>"
              "<p>She was the first woman to win a <b>Nobel Prize</b>, in 1903.</p><script>var x = 1;</script>"
              "</body></html>")
NILE_PDF_LINES = ["The Nile is a major north-flowing river in Africa.", "It flows into the Mediterranean Sea."]


def pdf_bytes(lines: list[str]) -> bytes:
    """A one-page PDF showing `lines` in Helvetica (hand-written objects, offsets computed)."""
    stream = "BT /F1 12 Tf 72 720 Td " + " ".join(f"({line}) Tj 0 -16 Td" for line in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 5 0 R >> >> "
               "/Contents 4 0 R >>", f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    out, offsets = "%PDF-1.4\n", []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out.encode()))
        out += f"{i} 0 obj\n{obj}\nendobj\n"
    xref = len(out.encode())
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n" + "".join(f"{o:010d} 00000 n \n" for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out.encode()


def encrypted_pdf(path: Path) -> None:
    from pypdf import PdfReader, PdfWriter

    plain = path.with_suffix(".plain")
    plain.write_bytes(pdf_bytes(["secret"]))
    writer = PdfWriter(clone_from=PdfReader(str(plain)))
    writer.encrypt("password")
    with open(path, "wb") as f:
        writer.write(f)
    plain.unlink()


def make_collection(root: Path) -> Path:
    """root/docs with eiffel.md, paris.txt, sub/curie.html, nile.pdf, rows.jsonl, and five files to skip."""
    docs = root / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "eiffel.md").write_text(EIFFEL)
    (docs / "paris.txt").write_text(PARIS)
    (docs / "sub" / "curie.html").write_text(CURIE_HTML)
    (docs / "nile.pdf").write_bytes(pdf_bytes(NILE_PDF_LINES))
    (docs / "rows.jsonl").write_text('{"id": "row-1", "title": "Alps", "text": "The Alps are a mountain range."}\n')
    (docs / "blob.txt").write_bytes(b"\x00\x01\x02 binary")
    (docs / "latin1.md").write_bytes("caf\xe9".encode("latin-1"))
    (docs / "empty.txt").write_text("  \n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    encrypted_pdf(docs / "locked.pdf")
    return docs
