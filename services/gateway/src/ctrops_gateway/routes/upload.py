"""Gateway routes: upload."""

from fastapi import APIRouter

router = APIRouter()
