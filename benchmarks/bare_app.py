"""The ceiling: a bare FastAPI app with the same shapes of endpoint and no FHIR work at all."""
from fastapi import FastAPI, Request
from fastapi.responses import Response

from benchmarks.payloads import careplan_bytes

app = FastAPI()
_BODY = careplan_bytes("bare")


@app.get("/fhir/CarePlan/{resource_id}")
async def read(resource_id: str) -> Response:
    return Response(_BODY, media_type="application/fhir+json")


@app.post("/fhir/CarePlan")
async def create(request: Request) -> Response:
    body = await request.body()
    return Response(body, status_code=201, media_type="application/fhir+json")
