"""Getting images into the store: local files now, https and appc names, with the signature gate."""

from trustd.unprivileged.fetch.request import FetchRequest, ImageRef, parse_image_ref
from trustd.unprivileged.fetch.workflow import FetchContext, fetch_image

__all__ = ["FetchContext", "FetchRequest", "ImageRef", "fetch_image", "parse_image_ref"]
