"""The HTTP API's bodies, as pydantic models: FastAPI validates requests and writes the
OpenAPI schema (``/openapi.json``, ``/docs``) from them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Ref = str | int  # an item: its raw id in the data set, or its title


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    history: list[Ref] = Field(description="Items the user interacted with, oldest first: raw "
                               "ids or titles. Longer than the run's history length: the "
                               "oldest are left out (and a note says so).")
    top_k: int = Field(10, description="How many items to return: 1 to the number of "
                       "candidates ranked.")
    candidates: list[Ref] | None = Field(None, max_length=200, description="Items to rank; "
                                         "default: the encoder's shortlist over the catalogue "
                                         "(the run's candidate count).")
    exclude_seen: bool = Field(True, description="Leave the history's items out of the "
                               "candidates.")
    ranker: Literal["auto", "encoder", "llm"] = Field(
        "auto", description="What ranks the candidates: auto (what the run's evaluation chose "
        "on valid), encoder (its own order) or llm (the LLM's order).")


class Item(BaseModel):
    rank: int  # 1 is best
    item: str  # raw id in the data set
    title: str
    score: float  # higher wins; comparable within one list only
    new: bool  # held out as new by the run's data: scored from its text


class RecommendResponse(BaseModel):
    run: str
    stage: Literal["llm", "fusion", "encoder"] = Field(description="What ranked `items`.")
    items: list[Item]
    encoder_items: list[Item] = Field(description="The same candidates' top K in the "
                                      "encoder's order.")
    history: list[str] = Field(description="The titles of the history read, oldest first.")
    notes: list[str] = Field(description="What was changed in the request, in sentences.")


class SearchHit(BaseModel):
    item: str
    title: str
    new: bool


class Health(BaseModel):
    status: Literal["loading", "ready", "failed"]
    error: str | None = None


class ErrorBody(BaseModel):
    error: str  # one sentence: what was wrong and what to do
