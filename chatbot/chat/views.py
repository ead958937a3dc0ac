from django.http import HttpRequest, HttpResponse

from chatbot.accounts import roles
from chatbot.accounts.access import permission_required


@permission_required(roles.USE_CHAT)
def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("chat")
