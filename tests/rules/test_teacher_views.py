"""Teacher pages: start jobs, list micro-rules and noise, promote noise, read the call log."""
from __future__ import annotations

from django.contrib.auth.models import User
from django.test import Client

from pldreview.context_processors import roles
from pldreview.models import Job
from rules.models import ClusteringRun, Decision, MicroRule, Rule, Task, TeacherCall
from tests.support.factories import make_examples, make_micro_rule


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _noise(task: Task, n: int = 3) -> list[MicroRule]:
    run = ClusteringRun.objects.create(task=task, eps=0.4, min_samples=2, embedding="tfidf-svd", n_rules=n, n_noise=n)
    micro = [make_micro_rule(example, f"the clause says thing {i}") for i, example in enumerate(make_examples(task, n))]
    for m in micro:
        m.clustering_run, m.cluster = run, -1
        m.save()
    return micro


def test_anonymous_visitors_are_sent_to_log_in(task: Task) -> None:
    response = Client().get("/tasks/nda-demo/teacher/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_the_teacher_page_shows_forms_only_to_admins(task: Task, admin_user: User, reviewer: User) -> None:
    admin_page = _client(admin_user).get("/tasks/nda-demo/teacher/")
    assert admin_page.status_code == 200
    assert b"Start extraction" in admin_page.content and b"Start clustering" in admin_page.content
    reviewer_page = _client(reviewer).get("/tasks/nda-demo/teacher/")
    assert reviewer_page.status_code == 200 and b"Start extraction" not in reviewer_page.content


def test_an_admin_starts_an_extraction_job(task: Task, admin_user: User, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=False):
        response = _client(admin_user).post("/tasks/nda-demo/teacher/extract/", {"limit": "5", "endpoint": "local"})
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    assert job.kind == "extract"
    assert job.params == {"task": "nda-demo", "split": "train", "limit": 5, "endpoint": "local"}
    assert job.created_by == admin_user


def test_a_reviewer_cannot_start_teacher_jobs(task: Task, reviewer: User) -> None:
    assert _client(reviewer).post("/tasks/nda-demo/teacher/extract/", {}).status_code == 403
    assert _client(reviewer).post("/tasks/nda-demo/teacher/cluster/", {}).status_code == 403
    assert not Job.objects.exists()


def test_a_bad_eps_comes_back_as_a_form_error(task: Task, admin_user: User) -> None:
    response = _client(admin_user).post("/tasks/nda-demo/teacher/cluster/", {"eps": "5", "min_samples": "6"})
    assert response.status_code == 400 and b"errorlist" in response.content
    assert not Job.objects.exists()


def test_clustering_without_micro_rules_is_refused_plainly(task: Task, admin_user: User) -> None:
    response = _client(admin_user).post("/tasks/nda-demo/teacher/cluster/", {"eps": "0.4", "min_samples": "6"})
    assert response.status_code == 400 and b"run an extraction first" in response.content


def test_the_micro_rule_list_names_the_teacher_model(task: Task, reviewer: User, django_assert_max_num_queries) -> None:
    _noise(task, 5)
    client = _client(reviewer)
    with django_assert_max_num_queries(12):
        response = client.get("/tasks/nda-demo/micro-rules/?noise=1")
    assert response.status_code == 200
    assert b"fake-teacher" in response.content and b"(teacher model" in response.content
    assert response.content.count(b"Promote to candidate") == 5


def test_a_reviewer_promotes_noise_with_htmx_and_gets_only_the_row(task: Task, reviewer: User) -> None:
    micro = _noise(task)[0]
    response = _client(reviewer).post(f"/micro-rules/{micro.pk}/promote/", {"reason": "edge case"},
                                      HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b"<html" not in response.content and b"promoted" in response.content
    rule = Rule.objects.get()
    assert rule.status == Rule.Status.PENDING
    assert Decision.objects.get(rule=rule).action == Decision.Action.PROMOTE_NOISE


def test_promoting_twice_without_htmx_shows_an_error(task: Task, reviewer: User) -> None:
    micro = _noise(task)[0]
    client = _client(reviewer)
    client.post(f"/micro-rules/{micro.pk}/promote/", {})
    response = client.post(f"/micro-rules/{micro.pk}/promote/", {}, follow=True)
    assert b"already been promoted" in response.content
    assert Rule.objects.count() == 1


def test_an_auditor_cannot_promote(task: Task, auditor: User) -> None:
    micro = _noise(task)[0]
    assert _client(auditor).post(f"/micro-rules/{micro.pk}/promote/", {}).status_code == 403
    assert not Rule.objects.exists()


def test_the_call_log_lists_tokens_and_latency(db: None, auditor: User, django_assert_max_num_queries) -> None:
    for i in range(3):
        TeacherCall.objects.create(request_hash=f"{i:064d}", purpose="extract", base_url="http://127.0.0.1:9/v1",
                                   model="gemma-3-270m-q4_k_m", request={"messages": []}, response_text="{}",
                                   prompt_tokens=100, completion_tokens=40, latency_ms=1234)
    client = _client(auditor)
    with django_assert_max_num_queries(10):
        response = client.get("/teacher/calls/")
    assert response.status_code == 200
    assert b"1234" in response.content and b"300" in response.content
    call = TeacherCall.objects.first()
    assert client.get(f"/teacher/calls/{call.pk}/").status_code == 200


def test_outsiders_cannot_read_the_call_log(db: None, outsider: User) -> None:
    assert _client(outsider).get("/teacher/calls/").status_code == 403


def test_the_task_page_links_to_its_teacher_page(task: Task, reviewer: User) -> None:
    response = _client(reviewer).get("/tasks/nda-demo/")
    assert response.status_code == 200 and b'href="/tasks/nda-demo/teacher/"' in response.content


def test_the_nav_links_the_call_log_for_every_role_that_may_read_it(
    task: Task, reviewer: User, auditor: User, admin_user: User, outsider: User, rf
) -> None:
    for user in (reviewer, auditor, admin_user):
        body = _client(user).get("/tasks/").content
        assert b'<a href="/teacher/calls/">Teacher calls</a>' in body
    request = rf.get("/")
    request.user = outsider
    assert "/teacher/calls/" not in [item["url"] for item in roles(request)["nav_items"]]


def test_micro_rules_of_a_cluster_the_teacher_could_not_merge_are_listed_and_promotable(
    task: Task, reviewer: User
) -> None:
    noise = _noise(task, 1)
    run = noise[0].clustering_run
    why = "The merged instruction 'Entailment' states no condition."
    run.params = {"failed_clusters": [{"cluster": 0, "error": why}], "complete": True}
    run.save()
    examples = make_examples(task, 3, start=1)  # example 0 carries the noise micro-rule
    stuck = [make_micro_rule(example, f"the clause grants access {i}") for i, example in enumerate(examples[:2])]
    merged = make_micro_rule(examples[2], "the clause is merged elsewhere")
    for micro, cluster in ((stuck[0], 0), (stuck[1], 0), (merged, 1)):
        micro.clustering_run, micro.cluster = run, cluster
        micro.save()
    client = _client(reviewer)
    page = client.get("/tasks/nda-demo/micro-rules/?noise=1").content.decode()
    assert "not merged" in page and why.replace("'", "&#x27;") in page
    assert page.count("Promote to candidate") == 3  # the noise one and the two unmerged
    assert f'id="micro-{merged.pk}"' not in page
    response = client.post(f"/micro-rules/{stuck[0].pk}/promote/", {}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and b"promoted" in response.content and b"not merged" in response.content
    assert Rule.objects.get().micro_rules.get() == stuck[0]
    refused = client.post(f"/micro-rules/{merged.pk}/promote/", {}, follow=True)
    assert b"Only a noise micro-rule, or one of a cluster the teacher could not merge" in refused.content
    assert "Not merged" in client.get("/tasks/nda-demo/teacher/").content.decode()
