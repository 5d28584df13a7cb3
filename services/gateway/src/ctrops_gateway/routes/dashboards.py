"""Gateway routes: dashboards."""

from fastapi import APIRouter

router = APIRouter()
