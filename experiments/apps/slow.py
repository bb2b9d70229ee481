"""The Slowloris experiment's handler: a small page for normal visitors, a large one for slow readers."""

from astra import Response

BIG = b"x" * (1024 * 1024)


def app(request):
    if request.path == "/big":
        return Response(BIG, content_type="application/octet-stream")
    if request.method == "POST":
        request.read()
    return Response("Hello World!")
