"""Prefect flows over STAC archives: discovery, scheduled co-registration, backfills (see DESIGN.md).

Imports `pipeline`.
"""
