"""The seeds' crawler on god: pages yield links, images get downloaded, each URL once.

    GOD_ADDRESS=coord:5678 .venv/bin/python scripts/crawl.py https://example.org/ --out /shared/images
    python -m consumer --queues pages,images          # on each compute host (with /shared mounted)

It puts the start page on queue ``pages`` (``consumer.tasks:fetch_page``), then each new page
found on ``pages`` and each new image on ``images`` (``consumer.tasks:download`` into
``--out``, which every consumer must reach at the same path), with retries. It prints a line
per page and image (a progress line on a terminal), a summary, and exits 0 when everything is
done, 1 if anything failed after its retries.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from producer import connect  # noqa: E402
from shared.errors import GodError  # noqa: E402

PAGES, IMAGES = "pages", "images"
FETCH, DOWNLOAD = "consumer.tasks:fetch_page", "consumer.tasks:download"


def crawl(start: str, out: Path, *, max_pages: int, retries: int, backoff: float, quiet: bool) -> int:
    """Crawl from start; returns the exit code."""
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = {start}
    pages = images = failed = 0
    terminal = sys.stdout.isatty() and not quiet
    with connect(results=True, retries=retries, retry_backoff=backoff) as god:
        god.put(start, queue=PAGES, task=FETCH)
        for r in god.results():
            if not r.ok:
                failed += 1
                print(f"failed after {r.attempts} attempt{'s' if r.attempts != 1 else ''}: {r.payload}: {r.error}", file=sys.stderr)
                continue
            if r.queue == IMAGES:
                images += 1
                line = f"image {r.value['url']} -> {r.value['path']} ({r.value['size']:,} bytes)"
            else:
                pages += 1
                line = f"page {r.value['url']} ({r.value['status']})"
                new_pages = [u for u in r.value["links"] if u not in seen][: max(0, max_pages - len(seen))]
                new_images = [u for u in r.value["images"] if u not in seen]
                seen.update(new_pages, new_images)
                if new_pages:
                    god.put_many(new_pages, queue=PAGES, task=FETCH)
                if new_images:
                    god.put_many([{"url": u, "dir": str(out)} for u in new_images], queue=IMAGES, task=DOWNLOAD)
            if terminal:
                print(f"\r{pages} pages, {images} images, {failed} failed, {len(god.waiting)} to go ",
                      end="", flush=True)
            elif not quiet:
                print(line, flush=True)
    if terminal:
        print()
    print(f"crawled {pages} pages and downloaded {images} images into {out}; {failed} failed")
    return 1 if failed else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("start", help="the first page's URL")
    ap.add_argument("--out", required=True, type=Path, help="the directory images go to (every consumer's)")
    ap.add_argument("--max-pages", type=int, default=1000, help="pages fetched at most (default 1000)")
    ap.add_argument("--retries", type=int, default=3, help="tries again of a page or image that failed (default 3)")
    ap.add_argument("--retry-backoff", type=float, default=1.0, help="seconds before the first retry (default 1)")
    ap.add_argument("--quiet", action="store_true", help="the summary only")
    args = ap.parse_args()
    if not args.start.startswith(("http://", "https://")):
        ap.error(f"start {args.start!r} is not an http(s) URL")
    try:
        code = crawl(args.start, args.out, max_pages=args.max_pages, retries=args.retries, backoff=args.retry_backoff,
                     quiet=args.quiet)
    except GodError as e:
        print(f"crawl: {e}", file=sys.stderr)
        code = e.exit_code
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
