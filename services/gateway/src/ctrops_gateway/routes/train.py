"""Gateway routes: train."""

from fastapi import APIRouter

router = APIRouter()
