from django.urls import path

from chatbot.console import judges, prompts, routing, rules, tools, views

app_name = "console"
urlpatterns = [
    path("models/", views.models_list, name="models"),
    path("models/new/", views.model_edit, name="model_new"),
    path("models/<int:pk>/", views.model_edit, name="model_edit"),
    path("models/<int:pk>/default/", views.model_make_default, name="model_default"),
    path("assistant/", views.assistant, name="assistant"),
    path("routing/", routing.routing_list, name="routing"),
    path("routing/new/", routing.routing_rule_edit, name="routing_rule_new"),
    path("routing/dry-run/", routing.routing_dry_run, name="routing_dry_run"),
    path("routing/<int:pk>/", routing.routing_rule_edit, name="routing_rule_edit"),
    path("routing/<int:pk>/toggle/", routing.routing_rule_toggle, name="routing_rule_toggle"),
    path("routing/<int:pk>/move/", routing.routing_rule_move, name="routing_rule_move"),
    path("routing/<int:pk>/delete/", routing.routing_rule_delete, name="routing_rule_delete"),
    path(
        "routing/collections/<int:pk>/confidential/",
        routing.collection_confidential,
        name="collection_confidential",
    ),
    path("prompts/", prompts.prompts_list, name="prompts"),
    path("prompts/new/", prompts.prompt_new, name="prompt_new"),
    path("prompts/<int:pk>/", prompts.prompt_version, name="prompt"),
    path("prompts/<int:pk>/publish/", prompts.prompt_publish, name="prompt_publish"),
    path("rules/", rules.rules_list, name="rules"),
    path("rules/new/", rules.rule_edit, name="rule_new"),
    path("rules/<int:pk>/", rules.rule_edit, name="rule_edit"),
    path("rules/<int:pk>/toggle/", rules.rule_toggle, name="rule_toggle"),
    path("tools/", tools.tools_list, name="tools"),
    path("tools/<slug:name>/", tools.tool_edit, name="tool_edit"),
    path("tools/<slug:name>/toggle/", tools.tool_toggle, name="tool_toggle"),
    path("judges/", judges.judges_list, name="judges"),
    path("judges/rejudge/", judges.judges_rejudge, name="judges_rejudge"),
    path("judges/<int:pk>/", judges.judge_edit, name="judge_edit"),
    path("judges/<int:pk>/toggle/", judges.judge_toggle, name="judge_toggle"),
]
