"""Masking and recognising personal data (DESIGN principle 8)."""
from minqing.personal_data import find_raw_personal_data, mask_free_text, mask_name, mask_phone


def test_phone_is_masked_like_public_notices():
    assert mask_phone("13812345678") == "138****5678"
    assert mask_phone("+86 138-1234-5678") == "138****5678"
    assert mask_phone("0452-5612345") == "****2345"


def test_name_keeps_only_the_family_name():
    assert mask_name("张三丰") == "张**"
    assert mask_name("李四") == "李*"


def test_free_text_loses_phone_and_id_numbers_but_keeps_the_matter():
    text = "房盖破损，请联系13812345678或0452-5612345，身份证230221199001011234"
    masked = mask_free_text(text)
    assert "房盖破损" in masked and "138****5678" in masked
    assert find_raw_personal_data(masked) is None
    assert find_raw_personal_data(text) == "a raw mobile phone number"


def test_ordinary_numbers_are_not_mistaken_for_personal_data():
    for text in ("黄牛场通往11屯的道路", "节省费用241万元", "办理事项384件", "LJ-20261122-0042"):
        assert find_raw_personal_data(text) is None, text


def test_identifiers_are_never_mistaken_for_phone_numbers():
    """A UUID such as ...-b198-0221-6623-... once looked like a mobile number and was refused."""
    import uuid
    assert find_raw_personal_data("8c1e2f3a-b198-0221-6623-0a1b2c3d4e5f") is None
    for _ in range(20000):
        value = str(uuid.uuid4())
        assert find_raw_personal_data(value) is None, value
        assert find_raw_personal_data(f"{value}:receipt:resident") is None, value


def test_phone_numbers_in_other_spellings_are_found_and_masked():
    """Full-width digits (common from Chinese input methods), dots, landlines without a hyphen."""
    for raw in ("１３８１２３４５６７８", "138.1234.5678", "04525612345", "＋８６ １３８－１２３４－５６７８"):
        assert find_raw_personal_data(f"请回电{raw}谢谢") is not None, raw
        assert find_raw_personal_data(mask_free_text(f"请回电{raw}谢谢")) is None, raw


def test_email_addresses_in_free_text_are_masked_and_caught():
    """Issue #12 §9: an e-mail address typed into details reached subscribers unmasked."""
    for raw, masked in [("请回复 zhang.san@example.com 谢谢", "请回复 z***@example.com 谢谢"),
                        ("13812345678@qq.com", "1***@qq.com"),
                        ("ＷＡＮＧ＠ｅｘａｍｐｌｅ．ｃｎ", "W***@example.cn"),
                        ("a.b-c+d@mail.163.com。", "a***@mail.163.com。")]:
        assert mask_free_text(raw) == masked, raw
        assert find_raw_personal_data(raw) == ("a raw mobile phone number" if raw.startswith("138")
                                               else "a raw e-mail address"), raw
        assert find_raw_personal_data(masked) is None, masked
    for not_an_address in ("z***@example.com", "x@y", "@example.com", "价格@10元"):
        assert find_raw_personal_data(not_an_address) is None, not_an_address
