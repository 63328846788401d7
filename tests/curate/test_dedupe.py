from counseltune.dedupe import find_duplicates

BASE = "来访者: 我最近总是失眠，晚上躺在床上脑子里全是工作的事情，越想越焦虑。\n心理咨询师: 听起来工作压力让你很难放松下来，这种情况持续多久了？"


def test_exact_duplicates_keep_the_first_in_input_order():
    dropped = find_duplicates(["a", "b", "c"], [BASE, "另一段完全不同的对话内容，讨论的是家庭关系。", BASE], 5, 0.85)
    assert dropped == {"c": ("exact_duplicate", "a", "identical text to a")}


def test_near_duplicates_are_found_and_confirmed_by_jaccard():
    near = BASE.replace("焦虑", "烦躁")
    dropped = find_duplicates(["a", "b"], [BASE, near], 5, 0.8)
    assert dropped["b"][0] == "near_duplicate" and dropped["b"][1] == "a"
    assert "Jaccard" in dropped["b"][2]


def test_dissimilar_dialogs_are_all_kept():
    other = "Client: I want to cut down on drinking.\nCounselor: What makes this the right time?"
    assert find_duplicates(["a", "b"], [BASE, other], 5, 0.85) == {}


def test_threshold_is_respected():
    near = BASE.replace("工作的事情", "家里的琐事")
    assert find_duplicates(["a", "b"], [BASE, near], 5, 0.99) == {}
    assert "b" in find_duplicates(["a", "b"], [BASE, near], 5, 0.5)


def test_a_cluster_of_three_keeps_only_its_first_member():
    texts = [BASE, BASE.replace("焦虑", "烦躁"), BASE.replace("焦虑", "紧张")]
    dropped = find_duplicates(["a", "b", "c"], texts, 5, 0.8)
    assert set(dropped) == {"b", "c"}
    assert {v[1] for v in dropped.values()} == {"a"}


def test_short_and_empty_texts_do_not_crash():
    assert find_duplicates(["a", "b", "c"], ["嗯", "嗯", ""], 5, 0.85) == {"b": ("exact_duplicate", "a", "identical text to a")}
