"""quiz_svc's instruments."""

from __future__ import annotations

from opentelemetry import metrics

from quizmesh.telemetry import seconds_histogram


class QuizMetrics:
    """quiz_svc's instruments (Prometheus names in comments)."""

    def __init__(self, meter: metrics.Meter) -> None:
        # quizmesh_quiz_joins_total
        self.joins = meter.create_counter("quizmesh_quiz_joins", description="Players who joined a quiz")
        # quizmesh_quiz_answers_accepted_total
        self.answers_accepted = meter.create_counter(
            "quizmesh_quiz_answers_accepted", description="Answers judged and durable in the event bus"
        )
        # quizmesh_quiz_answers_rejected_total{reason}
        self.answers_rejected = meter.create_counter(
            "quizmesh_quiz_answers_rejected", description="Answers refused, by reason"
        )
        # quizmesh_quiz_answer_batch_duration_seconds
        self.batch_duration = seconds_histogram(
            meter, "quizmesh_quiz_answer_batch_duration", "Time to judge and publish one batch of answers"
        )
