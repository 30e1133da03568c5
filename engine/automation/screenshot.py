"""A step's picture: its element outlined, every secret painted over, encoded for speed.

Playwright's `page.screenshot` has Chromium encode the PNG for size, and that encoding was
most of what a step's picture cost the browser. Chromium's DevTools protocol can encode for
speed instead (`optimizeForSpeed`): on 2 loaded cores a viewport picture with its mask and
outline cost Chromium about 90 ms of CPU instead of about 145 ms, at about 28 KiB instead of
13 KiB. So viewport pictures are taken through the page's own CDP session, with the masks
and the outline drawn as Playwright draws its own: in a glass pane in the top layer (above a
modal dialog), taken off right after the picture. A full-page picture stays Playwright's.
"""

import asyncio
import base64
import contextlib
from dataclasses import dataclass

from playwright.async_api import CDPSession, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator as PwLocator

from engine.constants import MASK_COLOR, OUTLINE_COLOR, SCREENSHOT_TIMEOUT_S

MARK_JS = """(els, token) => {
  for (const old of document.querySelectorAll('[data-usher-step]')) delete old.dataset.usherStep;
  const el = els[0];
  if (!el) return null;
  const box = el.getBoundingClientRect();
  if (!box.width || !box.height || getComputedStyle(el).visibility === 'hidden') return null;
  if (el.scrollIntoViewIfNeeded) el.scrollIntoViewIfNeeded(true);
  else el.scrollIntoView({block: 'center', inline: 'nearest'});
  el.dataset.usherStep = token;
  return window === window.top;
}"""
"""Mark the first element of a locator for the step's screenshot if it is shown (a box, not
visibility: hidden, as Playwright tells visible), scrolled into view, and take the marks of
earlier steps off in its frame: one round trip, and it waits for nothing. Return whether the
mark is in the top frame (null: nothing marked)."""
OUTLINE_CSS = (
    '[data-usher-step="{token}"] {{ outline: 3px solid {color} !important;'
    " outline-offset: 2px !important; }}"
)
"""The outline of the marked element, in force while the picture is taken."""
HIDE_CARET_CSS = "* { caret-color: transparent !important; }"
"""A blinking caret would make two pictures of one page differ (Playwright hides it too)."""
GLASS_JS = """(els, [color, css, paint]) => {
  let glass = document.querySelector('x-usher-glass');
  if (!glass) {
    glass = document.createElement('x-usher-glass');
    glass.setAttribute('popover', 'manual');
    glass.style.cssText = 'position:fixed;inset:0;width:100%;height:100%;max-width:none;'
      + 'max-height:none;margin:0;padding:0;border:none;overflow:visible;display:block;'
      + 'background:transparent;pointer-events:none;z-index:2147483647';
    const style = document.createElement('style');
    style.textContent = css;
    glass.appendChild(style);
    document.documentElement.appendChild(glass);
  }
  try { glass.hidePopover(); glass.showPopover(); } catch (e) {}
  const top = window === window.top;
  if (!paint) return top;
  for (const el of els) {
    const r = el.getBoundingClientRect();
    if (!r.width || !r.height) continue;
    const box = document.createElement('x-usher-mask');
    box.style.cssText = `position:fixed;display:block;margin:0;padding:0;border:none;`
      + `left:${r.left}px;top:${r.top}px;width:${r.width}px;height:${r.height}px;`
      + `background:${color}`;
    glass.appendChild(box);
  }
  return top;
}"""
"""Put the frame's glass pane up (once per picture) with the picture's style, in the top
layer; paint a box of the mask colour over each element when told to. Return whether the
frame is the page's top frame."""
UNGLASS_JS = "() => document.querySelectorAll('x-usher-glass').forEach(pane => pane.remove())"
"""Take the frame's glass pane down, with its style: the page is as the flow left it."""


@dataclass(frozen=True)
class Mark:
    """The step's element as marked for its picture."""

    element: PwLocator
    token: str
    top: bool
    """In the page's top frame; else the outline's style goes into the element's frame."""

    @property
    def css(self) -> str:
        """Return the style that outlines the marked element."""
        return OUTLINE_CSS.format(token=self.token, color=OUTLINE_COLOR)


class Camera:
    """Take a page's step pictures; one CDP session per page, opened at the first picture."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.session: CDPSession | None = None

    async def viewport(self, masks: list[PwLocator], mark: Mark | None) -> bytes:
        """Return a PNG of the viewport with `masks` painted over and the mark outlined.

        Raises PlaywrightError when the page cannot give one (closed, crashed, navigating
        away), or TimeoutError after SCREENSHOT_TIMEOUT_S: no picture is taken with a mask
        missing, and the glass panes come down either way.
        """
        css = HIDE_CARET_CSS if mark is None else f"{mark.css} {HIDE_CARET_CSS}"
        # Until every pane is known to be in the top frame, every frame's comes down.
        framed = True
        try:
            async with asyncio.timeout(SCREENSHOT_TIMEOUT_S):
                tops = [
                    await mask.evaluate_all(GLASS_JS, [MASK_COLOR, css, True]) for mask in masks
                ]
                if mark is not None and not mark.top:
                    tops.append(await mark.element.evaluate_all(GLASS_JS, [MASK_COLOR, css, False]))
                framed = not all(tops)
                return await self._capture()
        finally:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SCREENSHOT_TIMEOUT_S):
                    await self._take_down(framed)

    async def full_page(self, masks: list[PwLocator], mark: Mark | None) -> bytes:
        """Return a PNG of the whole page, masked and outlined by Playwright."""
        return await self.page.screenshot(
            type="png",
            mask=masks,
            mask_color=MASK_COLOR,
            full_page=True,
            style=None if mark is None else mark.css,
        )

    async def _capture(self) -> bytes:
        """Have Chromium picture the viewport as shown now, encoded for speed."""
        if self.session is None:
            self.session = await self.page.context.new_cdp_session(self.page)
        shot = await self.session.send(
            "Page.captureScreenshot", {"format": "png", "optimizeForSpeed": True}
        )
        return base64.b64decode(shot["data"])

    async def _take_down(self, framed: bool) -> None:
        """Take the top frame's glass pane down, and every other frame's when `framed`: a
        page full of iframes costs a round trip each only when a pane went into one. A frame
        that went away took its own."""
        frames = self.page.frames if framed else [self.page.main_frame]
        for frame in frames:
            with contextlib.suppress(PlaywrightError):
                await frame.evaluate(UNGLASS_JS)
