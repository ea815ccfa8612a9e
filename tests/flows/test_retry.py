"""Which errors the flows' tasks retry: transient storage errors yes, bad input no."""

from __future__ import annotations

import botocore.exceptions
import pytest
import ray

from flows.archive import ArchiveError
from flows.coregister import is_transient
from pipeline import RasterError, TransientReadError


@pytest.mark.parametrize("exc, retried", [
    (ConnectionResetError("peer reset"), True),
    (TimeoutError("read timed out"), True),
    (OSError("HTTP 503 Slow Down"), True),
    (botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
    (FileNotFoundError("s3://bucket/missing.tif"), False),
    (PermissionError("AccessDenied"), False),
    (RasterError("s3://bucket/x.tif: not a raster"), False),
    (TransientReadError("s3://bucket/x.tif: read of window failed: still failing after 3 tries"), True),
    (ValueError("end must be after start"), False),
])
def test_transient_errors_are_retried_and_bad_input_is_not(exc, retried):
    assert is_transient(exc) is retried


def raised_from(exc: BaseException, cause: BaseException) -> BaseException:
    """`exc` as `raise exc from cause` leaves it."""
    exc.__cause__ = cause
    return exc


def test_a_wrapped_connection_error_is_transient_but_a_wrapped_bad_raster_is_not():
    assert is_transient(raised_from(ArchiveError("s3://bucket/stac: cannot be listed"),
                                    ConnectionRefusedError("endpoint down")))
    assert not is_transient(raised_from(RasterError("a.tif: truncated"), OSError("truncated TIFF")))


@ray.remote
def _raise(exc: BaseException) -> None:
    raise exc


def test_errors_raised_on_a_ray_worker_keep_their_class(ray_cluster):
    for exc, retried in ((TransientReadError("s3://bucket/x.tif: still failing after 3 tries"), True),
                         (RasterError("s3://bucket/x.tif: unreadable data, truncated or corrupt"), False)):
        with pytest.raises(type(exc)) as caught:
            ray.get(_raise.remote(exc))
        assert is_transient(caught.value) is retried
