"""Gateway routes: explain."""

from fastapi import APIRouter

router = APIRouter()
