from django.apps import AppConfig


class EvaluationConfig(AppConfig):
    name = "evaluation"
    label = "evaluation"

    def ready(self) -> None:
        from chatbot import hooks
        from evaluation import hooks as receivers

        hooks.turn_finished.connect(receivers.on_turn_finished, dispatch_uid="evaluation.judge")
        hooks.feedback_given.connect(receivers.on_feedback_given, dispatch_uid="evaluation.flag")
        hooks.escalation_requested.connect(
            receivers.on_escalation_requested, dispatch_uid="evaluation.flag_escalation"
        )
        hooks.weekly_report_sections.connect(
            receivers.weekly_report_judges, dispatch_uid="evaluation.weekly_judges"
        )
