"""User-space killers (issue 28): who they are, their rules, and whether a kill was a memory kill."""

import random

from oomscope import killers
from oomscope.analysis.killer import killer_sentences
from oomscope.capture.userspace import finish_user_capture, place_user_kill, victim_event
from oomscope.killers import (classify, earlyoom_met, earlyoom_rule, kubelet_eviction, parse_managed_oom, parse_oomd_conf,
                              parse_size, recognise)
from oomscope.layouts import SignalEvent
from oomscope.model import Capture, Killer, KillPressure, Victim

from .helpers import within

GIB = 1 << 30
CALM = KillPressure(cgroup="/app", cgroup_usage_bytes=100 << 20, cgroup_limit_bytes=GIB, limit_cgroup="/app",
                    host_psi={"some_avg10": 0.3, "full_avg10": 0.0}, mem_total_bytes=16 * GIB, mem_available_bytes=12 * GIB,
                    swap_total_bytes=0, swap_free_bytes=0)


def pressure(**kw):
    p = KillPressure(**{**CALM.__dict__, **kw})
    return p


# --- recognising killers ---

def test_known_killers_by_executable_and_by_comm_when_it_cannot_be_read():
    assert recognise("earlyoom", "/usr/bin/earlyoom")[0] == "earlyoom"
    assert recognise("systemd-oomd", "/usr/lib/systemd/systemd-oomd")[0] == "systemd-oomd"
    assert recognise("oomd", "/usr/local/bin/oomd")[0] == "oomd"
    assert recognise("kubelet", "/usr/bin/kubelet (deleted)")[0] == "kubelet"  # upgraded in place
    assert recognise("earlyoom", None) == ("earlyoom", "its comm 'earlyoom' (its executable could not be read)")
    assert recognise("containerd-shim", "/usr/bin/containerd-shim-runc-v2")[0] == "runtime"
    assert recognise("runc", None)[0] == "runtime"


def test_a_comm_that_names_a_killer_is_not_trusted_against_its_executable():
    name, how = recognise("earlyoom", "/usr/bin/python3.11")
    assert name is None and "not trusted" in how
    assert recognise("bash", "/usr/bin/bash") == (None, "")


# --- the memory-kill decision ---

def test_kill_9_from_a_shell_with_no_pressure_is_not_a_memory_kill():
    d = classify("bash", "/usr/bin/bash", CALM, "/app")
    assert not d.memory_kill and d.killer is None and d.met == []


def test_any_sender_under_pressure_is_a_memory_kill_and_each_rule_is_said():
    d = classify("bash", "/usr/bin/bash", pressure(cgroup_usage_bytes=int(0.95 * GIB)), "/app")
    assert d.memory_kill and d.killer is None and d.met == ["the cgroup /app at 95% of its limit (972.8 MiB of 1024.0 MiB)"]
    # the host's PSI counts any cgroup's stall at its own limit: recorded, never a rule
    assert not classify("sh", "/bin/sh", pressure(host_psi={"some_avg10": 25.0, "full_avg10": 9.0}), "/app").memory_kill
    assert classify("sh", "/bin/sh", pressure(cgroup_psi={"full_avg10": 6.0}), "/app").met == ["the cgroup's memory PSI full avg10 6.0%"]
    assert "MemAvailable" in classify("sh", "/bin/sh", pressure(mem_available_bytes=GIB), "/app").met[0]
    assert "memory.high" in classify("sh", "/bin/sh", pressure(cgroup_high_bytes=50 << 20), "/app").met[0]


def test_a_known_killer_is_a_memory_kill_even_when_oomscope_saw_no_pressure():
    d = classify("earlyoom", "/usr/bin/earlyoom", CALM, "/app")
    assert d.memory_kill and d.killer == "earlyoom" and d.met == []


def test_a_runtime_is_the_kubelets_only_for_a_pod_under_pressure():
    pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-ab.scope"
    assert not classify("runc", "/usr/bin/runc", CALM, pod).memory_kill  # a deploy, a liveness probe
    d = classify("runc", "/usr/bin/runc", pressure(mem_available_bytes=GIB // 2), pod)
    assert d.memory_kill and d.killer == "kubelet" and "on behalf of the kubelet" in d.how
    d = classify("runc", "/usr/bin/runc", pressure(mem_available_bytes=GIB // 2), "/docker/abc")
    assert d.memory_kill and d.killer is None  # pressure alone: any sender's, no kubelet named


def test_no_swap_and_no_limit_are_not_pressure():
    p = pressure(cgroup_limit_bytes=None, swap_total_bytes=0, swap_free_bytes=0)
    assert p.cgroup_ratio is None and p.swap_free_ratio == 0.0 and killers.met_rules(p) == []


# --- earlyoom's command line (earlyoom 1.7, earlyoom(1)) ---

def test_earlyoom_defaults():
    e = earlyoom_rule(["earlyoom"]).effective(16 * GIB, 0)
    assert e == {"mem_term_pct": 10.0, "mem_kill_pct": 5.0, "swap_term_pct": 10.0, "swap_kill_pct": 5.0}


def test_earlyoom_options_in_every_spelling():
    r = earlyoom_rule(["earlyoom", "-m", "15,3", "-s5", "-r", "3600", "--prefer", "(^|/)java$", "-n"])
    assert r.effective(16 * GIB, 4 * GIB) == {"mem_term_pct": 15.0, "mem_kill_pct": 3.0, "swap_term_pct": 5.0, "swap_kill_pct": 2.5}
    assert r.given == ["-m 15,3", "-s 5"]


def test_earlyoom_size_options_the_lower_of_m_and_M_and_M_alone():
    # 1 GiB of 16 GiB is 6.25%, lower than -m 10: used
    e = earlyoom_rule(["earlyoom", "-m", "10", "-M", "1048576"]).effective(16 * GIB, 0)
    assert e["mem_term_pct"] == 6.25 and e["mem_kill_pct"] == 3.125
    # -M alone replaces the default -m, even when higher
    e = earlyoom_rule(["earlyoom", "-M", "4194304,1048576"]).effective(16 * GIB, 0)
    assert e["mem_term_pct"] == 25.0 and e["mem_kill_pct"] == 6.25
    # without the total, the percentage stands
    assert earlyoom_rule(["earlyoom", "-M", "1048576"]).effective(None, None)["mem_term_pct"] == 10.0


def test_earlyoom_met_says_which_threshold():
    r = earlyoom_rule(["earlyoom"])
    assert earlyoom_met(r, pressure(mem_available_bytes=int(0.04 * 16 * GIB))).endswith("its SIGKILL threshold")
    assert earlyoom_met(r, pressure(mem_available_bytes=int(0.08 * 16 * GIB))).endswith("its SIGTERM threshold")
    assert "neither" in earlyoom_met(r, CALM)
    assert earlyoom_met(r, pressure(mem_total_bytes=None)) is None


def test_earlyoom_hostile_command_lines_within_a_deadline():
    rng = random.Random(28)
    bad = ["-m", "-m", "nan", "-m", "inf", "-m", "-5", "-m", "1e999", "-m", "9" * 100000, "-s", ",", "-M", "1,2,3",
           "-M", "-1", "-S", "0x10", "--dryrun", "-m"]
    with within(2.0):
        r = earlyoom_rule(["earlyoom"] + bad)
        assert r.mem_term_pct == 10.0 and r.swap_term_pct == 10.0 and r.dryrun and r.mem_term_kib is None
        assert "--dryrun was given" in r.words(GIB, 0)
        earlyoom_rule(["earlyoom"] + ["-m"] * 1_000_000)  # a million options: only the first MAX_ARGS are looked at
        for _ in range(300):
            argv = ["earlyoom"] + ["".join(rng.choice("-mMsS0123456789,.e%x \u202e\0") for _ in range(rng.randint(0, 12)))
                                   for _ in range(rng.randint(0, 20))]
            e = earlyoom_rule(argv).effective(rng.choice([None, 0, GIB]), rng.choice([None, 0, GIB]))
            assert all(0.0 <= v <= 100.0 for v in e.values()), (argv, e)


# --- systemd-oomd ---

def test_oomd_conf_defaults_and_drop_ins():
    assert parse_oomd_conf([]).swap_used_limit == "90%"
    conf = parse_oomd_conf([("/etc/systemd/oomd.conf", "[OOM]\n#SwapUsedLimit=10%\nSwapUsedLimit=80%\n"),
                            ("/etc/systemd/oomd.conf.d/a.conf", "[OOM]\nDefaultMemoryPressureLimit=50%\n[Other]\nSwapUsedLimit=1%\n")])
    assert (conf.swap_used_limit, conf.default_memory_pressure_limit, conf.default_memory_pressure_duration) == ("80%", "50%", "30s")


def test_managed_oom_from_a_unit_and_its_drop_in():
    managed = parse_managed_oom([("/usr/lib/systemd/system/user@.service", "[Service]\nManagedOOMMemoryPressure=kill\n"),
                                 ("/etc/systemd/system/user@1000.service.d/x.conf",
                                  "[Service]\nManagedOOMMemoryPressureLimit=40%\nExecStart=/bin/evil\n")])
    assert managed == {"ManagedOOMMemoryPressure": "kill", "ManagedOOMMemoryPressureLimit": "40%"}
    words = killers.oomd_words("user@1000.service", managed, parse_oomd_conf([]))
    assert "memory PSI full above 40% for 30s" in words


def test_oomd_hostile_files_within_a_deadline():
    with within(2.0):
        assert parse_managed_oom([("x", "[Service]\n" + "ManagedOOMSwap=kill" * 200000)]) == {}  # one line, no '\n': no key
        parse_oomd_conf([("x", "[OOM]\n" + "SwapUsedLimit=1%\n" * 100000)])
        parse_managed_oom([("x", "\0\u2028[Slice]\u2028ManagedOOMSwap=kill\n" + "[" * 100000)])


# --- the kubelet ---

def test_kubelet_thresholds_flags_over_config_and_the_default():
    config = 'kind: KubeletConfiguration\nevictionHard:\n  memory.available: "200Mi"\n  nodefs.available: "10%"\nevictionSoft:\n  memory.available: 500Mi\n'
    assert kubelet_eviction(["kubelet"], config) == {"hard": "200Mi", "soft": "500Mi"}
    assert kubelet_eviction(["kubelet", "--eviction-hard=memory.available<1Gi,nodefs.available<5%"], config)["hard"] == "1Gi"
    assert kubelet_eviction(["kubelet"], None) == {"hard": "100Mi (the kubelet's default)"}
    assert killers.config_path(["kubelet", "--config", "/var/lib/kubelet/config.yaml"]) == "/var/lib/kubelet/config.yaml"
    assert parse_size("100Mi") == 100 << 20 and parse_size("1G") == 10 ** 9 and parse_size("1e9") is None


def test_kubelet_hostile_config_within_a_deadline():
    with within(2.0):
        kubelet_eviction(["kubelet"] + ["--eviction-hard=" + "memory.available<" * 10000], "evictionHard:\n" + " memory.available: x\n" * 100000)
        assert parse_size("9" * 1000) is None


# --- the capture and the verdict ---

def _user_capture(p: KillPressure, **killer) -> Capture:
    cap = Capture(kill_id="x", victim=Victim(pid=42, comm="java"))
    finish_user_capture(cap, Killer(kind="userspace", comm="earlyoom", pid=7, exe="/usr/bin/earlyoom", unit="earlyoom.service",
                                    signal="SIGTERM, then SIGKILL", known_as="earlyoom", rule="earlyoom sends SIGTERM when ...",
                                    pressure_met=killers.met_rules(p), pressure=p, **killer), victim_read=True)
    return cap


def test_verdict_says_who_killed_by_which_rule_and_what_the_kernel_would_have_done():
    said = killer_sentences(_user_capture(pressure(cgroup_usage_bytes=int(0.95 * GIB), mem_available_bytes=GIB // 2)))
    assert said[0] == ("Killed from user space, not by the kernel's OOM killer: earlyoom (earlyoom, pid 7, /usr/bin/earlyoom, "
                       "earlyoom.service) sent SIGTERM, then SIGKILL to pid 42 (java).")
    assert said[1].startswith("By its rule: earlyoom sends SIGTERM")
    assert said[2].startswith("Memory pressure at the kill: the cgroup /app at 95% of its limit")
    assert said[3].startswith("The kernel would not have killed it yet: /app held 972.8 MiB of its 1.00 GiB limit (95.0%), 51.2 MiB from it")


def test_old_captures_are_kernel_kills_and_the_new_field_round_trips():
    old = Capture(kill_id="x", victim=Victim(pid=1)).to_dict()
    del old["killer"]
    assert Capture.from_dict(old).killer == Killer()
    assert Capture.from_dict(old).killer.kind == "kernel"
    cap = _user_capture(pressure(host_psi={"some_avg10": 20.0}))
    back = Capture.from_json(cap.to_json())
    assert back.killer == cap.killer and back.killer.pressure.host_psi == {"some_avg10": 20.0}


def test_a_user_kill_is_placed_at_the_nearest_limit_and_its_event_carries_the_victim():
    pl = place_user_kill("/a/b", "/a", 2)
    assert (pl.cgroup.oom_memcg, pl.cgroup.task_memcg, pl.is_global) == ("/a", "/a/b", False)
    assert place_user_kill("/a/b", None, 2).cgroup.oom_memcg == "/a/b"
    ev = victim_event(SignalEvent(5, 7, 7, 42, 9, 0, 1, "earlyoom", "java"), None, None)
    assert (ev.victim_pid, ev.victim_comm, ev.anon_rss_kb, ev.trigger_tgid) == (42, "java", None, 0)


def test_a_sender_inside_the_targets_own_cgroup_counts_only_the_hosts_pressure():
    full = pressure(cgroup_usage_bytes=GIB, cgroup_psi={"some_avg10": 50.0})
    # a storm's parent ending its children in their full cgroup: the workload's own doing
    d = classify("python3", "/usr/bin/python3.11", full, "/app/workers", "/app")
    assert not d.memory_kill and "inside the target's own cgroup" in d.why
    # the same from elsewhere is a memory kill; and inside, the host's pressure still counts
    assert classify("python3", "/usr/bin/python3.11", full, "/app/workers", "/ops").memory_kill
    d = classify("python3", "/usr/bin/python3.11", pressure(mem_available_bytes=GIB // 4), "/app", "/app")
    assert d.memory_kill and d.met[0].startswith("the host's MemAvailable")
    # a known killer is one wherever it runs; "/" (unknown) is no subtree
    assert classify("earlyoom", "/usr/bin/earlyoom", CALM, "/app", "/app").memory_kill
    assert classify("sh", "/bin/sh", full, "/app", "/").memory_kill
