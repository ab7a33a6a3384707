from moebench.engine.device import cpu_oversubscription


def test_oversubscription_by_threads_names_the_thread_count_moebench_would_set():
    msg = cpu_oversubscription(4, 2, 2)
    assert "4 ranks x 2 threads on 2 cores" in msg and "OMP_NUM_THREADS=1 is what moebench sets" in msg
    assert "OMP_NUM_THREADS=4" in cpu_oversubscription(2, 8, 8)


def test_more_ranks_than_cores_is_said_without_blaming_threads():
    msg = cpu_oversubscription(4, 1, 2)
    assert "4 single-thread ranks share 2 cores" in msg and "OMP_NUM_THREADS" not in msg


def test_no_line_when_the_threads_fit_or_the_cores_are_unknown():
    assert cpu_oversubscription(4, 1, 4) is None
    assert cpu_oversubscription(2, 4, 8) is None
    assert cpu_oversubscription(2, 1, None) is None
