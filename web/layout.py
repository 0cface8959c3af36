"""How the page fits a screen, where Gradio's own layout falls short (checked in the browser at 1400 and 390 px).

* **Galleries that wrap.** Gradio lays a gallery out in a fixed number of 100 px columns and a box of fixed height:
  in the photo's narrow column the face picker showed 3.5 of 6 faces with an empty box below, and on a phone the ages
  strip showed 6 of 11. The face picker and the strip now fill their width with as many columns as fit, every row
  shown, and the thumbnails start below the gallery's label (their numbers are not hidden under it).
* **A phone shows the result.** Under 720 px the columns stack; the order is the photo (and its face picker), then
  the preview with the age slider, then *everyone in the picture*, then the aligned face: after a drop the page
  scrolls to the preview once it is there (only on a narrow screen, only once per photo, and not when the visitor
  scrolled meanwhile).
* **Tables.** The strip's table keeps "target" and "age 100" on one line.

:data:`CSS` goes to ``launch(css=...)`` and :data:`HEAD` to ``launch(head=...)`` beside :mod:`web.a11y`'s.
"""

from __future__ import annotations

__all__ = ["CSS", "HEAD", "NARROW_PX"]

NARROW_PX = 720
"""Below this width the page is laid out for a phone."""

CSS = f"""
#face-picker .grid-wrap, #strip-gallery .grid-wrap {{ min-height: 0 !important; height: auto !important;
  max-height: none !important; overflow: visible !important; }}
#face-picker .grid-container {{ grid-template-columns: repeat(auto-fill, minmax(84px, 1fr)) !important; }}
#face-picker .grid-container, #strip-gallery .grid-container {{ padding-top: 2.25rem !important; }}
#face-picker .thumbnail-item, #strip-gallery .thumbnail-item {{ width: 100% !important; height: auto !important;
  aspect-ratio: 1 / 1; }}
#strip-metrics th, #strip-metrics td:first-child {{ white-space: nowrap; }}
@media (max-width: {NARROW_PX}px) {{
  #strip-gallery .grid-container {{ grid-template-columns: repeat(auto-fill, minmax(88px, 1fr)) !important; }}
  #group-row {{ flex-direction: column; }}
  #photo-row {{ display: contents; }}
  #photo-row > #photo-col {{ order: 1; }}
  #photo-row > #result-col {{ order: 2; }}
  #group-box {{ order: 3; }}
  #photo-row > #aligned-col {{ order: 4; }}
  #tabs {{ order: 5; }}
}}
"""

HEAD = f"""<script>
(() => {{
  // On a phone, once per new photo: bring the preview into view when it arrives, unless the visitor scrolled.
  let waiting = false, scrolled = false, before = null;
  const shown = () => {{ const img = document.querySelector("#result img"); return img ? img.src : null; }};
  const dropped = (e) => {{
    if (!e.target.closest || !e.target.closest("#photo-col") || innerWidth >= {NARROW_PX}) return;
    if (e.type === "change" && !e.target.matches("input[type=file]")) return;
    waiting = true; scrolled = false; before = shown();
  }};
  for (const kind of ["change", "drop", "paste"]) addEventListener(kind, dropped, true);
  addEventListener("touchmove", () => {{ scrolled = true; }}, {{passive: true}});
  addEventListener("wheel", () => {{ scrolled = true; }}, {{passive: true}});
  new MutationObserver(() => {{
    if (!waiting) return;
    const src = shown();
    if (!src || src === before) return;
    waiting = false;
    if (!scrolled) document.querySelector("#result").scrollIntoView({{block: "start", behavior: "smooth"}});
  }}).observe(document.documentElement, {{subtree: true, childList: true, attributes: true,
                                          attributeFilter: ["src"]}});
}})();
</script>"""
