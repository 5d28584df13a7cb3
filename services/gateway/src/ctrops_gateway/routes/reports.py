"""Gateway routes: reports."""

from fastapi import APIRouter

router = APIRouter()
