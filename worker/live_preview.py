"""Preview events while a job denoises: every `every` steps, the step's x0 as a small ERP JPEG
(models/latent_preview.py) published as a `preview` event with a data: URL, so the page can show it in the 360° viewer
as it forms."""

from __future__ import annotations

import base64

from core.jobs import JobStore


def preview_publisher(store: JobStore, job_id: str, every: int):
    """The pipeline's `preview` callback for this job, or None when previews are off (`every` = 0)."""
    if not every:
        return None
    from models.latent_preview import preview_jpeg

    def preview(step: int, total: int, x0) -> None:
        if step % every:
            return
        jpeg, width, height = preview_jpeg(x0)
        image = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode()
        store.publish(
            job_id, "preview", {"step": step, "total": total, "image": image, "width": width, "height": height}
        )

    return preview
