"""What the page adds for people who use a keyboard or a screen reader, where Gradio's own markup falls short
(checked in the browser test by axe-core: no serious or critical violation).

* **Names.** Gradio wraps pictures (the aligned face, the result, gallery thumbnails, the examples) in buttons that
  have no text; each gets the name of its panel and picture ("Result (preview): picture", "Examples: astronaut.png").
  An empty box that carries a label without a role gets the role of a picture.
* **The age slider by keyboard.** The page renders a preview when the slider is *released*, which Gradio only
  notices for a pointer; arrow keys, Page Up/Down, Home/End on the slider and Enter in its number box now count as a
  release too.
* **Contrast.** The slider's bounds, the upload box's "or" and the footer's links in the body text colour, and the
  primary buttons' white text on a darker orange (Gradio's lighter grey is 1.9:1 on white and its orange 2.8:1
  under white text; WCAG AA asks 4.5:1).

:data:`HEAD` is a script for ``gr.Blocks(head=...)`` and :data:`CSS` a style sheet for ``gr.Blocks(css=...)``.
"""

from __future__ import annotations

__all__ = ["CSS", "HEAD"]

HEAD = """<script>
(() => {
  const name = (el) => (el.getAttribute("aria-label") || el.textContent || "").trim();
  const label = (el) => {
    const block = el.closest(".block, .gallery, .form");
    const own = block && block.querySelector('[data-testid="block-label"], [data-testid="block-info"]');
    return own ? own.textContent.trim() : "";
  };
  const picture = (img) => {
    const src = (img.getAttribute("src") || "").split("?")[0];
    const file = decodeURIComponent(src.split("/").pop() || "");
    return img.getAttribute("alt") || (file.startsWith("data:") || !file.includes(".") ? "picture" : file);
  };
  const fix = () => {
    for (const button of document.querySelectorAll("button")) {
      const img = button.querySelector("img");
      if (img && !name(button)) {
        const where = label(button);
        button.setAttribute("aria-label", (where ? where + ": " : "") + picture(img));
      }
    }
    for (const box of document.querySelectorAll("[aria-label]:not([role])")) {
      if (box.tagName === "DIV" || box.tagName === "SPAN") box.setAttribute("role", "img");
    }
  };
  new MutationObserver(fix).observe(document.documentElement, {subtree: true, childList: true});
  document.addEventListener("DOMContentLoaded", fix);
  const keys = ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "PageUp", "PageDown", "Home", "End"];
  document.addEventListener("keyup", (e) => {
    const t = e.target;
    let range = null;
    if (t.matches && t.matches("input[type=range]") && keys.includes(e.key)) range = t;
    if (t.matches && t.matches("input[type=number]") && e.key === "Enter") {
      range = t.closest(".block") && t.closest(".block").querySelector("input[type=range]");
    }
    if (range) for (const kind of ["pointerup", "mouseup"]) range.dispatchEvent(new Event(kind, {bubbles: true}));
  }, true);
})();
</script>"""

CSS = """
.max_value, .min_value, [data-testid="upload-text"] .or { color: var(--body-text-color) !important; }
footer a, footer button, .show-api, .built-with, .settings { color: var(--body-text-color) !important; }
:root, .dark { --button-primary-background-fill: #c2410c; --button-primary-background-fill-hover: #9a3412; }
"""
