"""Gateway routes: performance."""

from fastapi import APIRouter

router = APIRouter()
