"""Writes pii_labelled.jsonl (beside this file) from templates: {KIND:value} marks an identifier.

Run: python tests/llm/data/make_pii_labelled.py. The check digits of ID, RRN and card numbers are computed here, so
the labelled numbers are valid ones (and the controls' invalid ones are invalid on purpose).
"""
import json
import re
import sys
from collections import Counter
from pathlib import Path

def cn_id(first17):
    w = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return first17 + "10X98765432"[sum(int(d) * x for d, x in zip(first17, w)) % 11]

def rrn(first12, dash=True):
    w = [2, 3, 4, 5, 6, 7, 8, 9, 2, 3, 4, 5]
    c = (11 - sum(int(d) * x for d, x in zip(first12, w)) % 11) % 10
    s = first12 + str(c)
    return s[:6] + "-" + s[6:] if dash else s

def luhn(prefix):
    for c in "0123456789":
        ds = [int(d) for d in prefix + c]
        t = sum((d * 2 - 9 if d > 4 else d * 2) if i % 2 else d for i, d in enumerate(reversed(ds)))
        if t % 10 == 0:
            return prefix + c

def fw(s):  # full-width digits/letters/hyphen
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" else ch for ch in s)

ZH = [
    "我是{NAME:李娜}", "我是{NAME:李娜}，最近压力很大。", "我叫{NAME:欧阳娜娜}，今年大三。", "我叫{NAME:司马文}，是一名程序员。",
    "我叫{NAME:诸葛明}。", "我的名字是{NAME:上官婉清}。", "你好，我是{NAME:张晓燕}，想咨询一下情绪问题。", "老师您好，我是{NAME:陈浩}。",
    "本人{NAME:赵丽}，女，28岁。", "我叫{NAME:黄丽}，今年三十岁。", "我叫{NAME:王小明}今年上大学", "我叫{NAME:张伟}，今年30岁。",
    "{NAME:王建国}昨天又骂我了。", "我和{NAME:周杰}一起去的。", "我男朋友{NAME:刘洋}总是不回消息。", "我老公{NAME:张磊}最近总是加班。",
    "我妈妈{NAME:王秀英}身体不好。", "我同事{NAME:上官婉儿}总针对我。", "朋友{NAME:赵敏}劝我来咨询。", "我爸爸叫{NAME:孙志强}。",
    "她叫{NAME:何静}，是我的室友。", "我的咨询师{NAME:陈晓红}女士很耐心。", "{NAME:张伟}医生建议我多休息。", "班主任{NAME:林国栋}老师找我谈话了。",
    "我领导{NAME:吴海涛}天天让我加班。", "我前女友{NAME:郑雪}结婚了。", "我儿子{NAME:李子轩}不肯上学。", "{NAME:欧阳修远}先生是我的房东。",
    "我跟{NAME:马丽华}吵架了。", "室友{NAME:高翔}总是很晚回来。", "我的闺蜜{NAME:许佳琪}最近不理我。", "我哥哥{NAME:杨帆}借了我很多钱。",
    "我是{NAME:王芳}的妈妈。", "我女朋友叫{NAME:司马静}。", "我丈夫{NAME:诸葛建华}有外遇。",
    "我的电话是{PHONE:" + fw("13812345678") + "}", "手机：{PHONE:" + fw("139-1234-5678") + "}", "联系方式{PHONE:" + fw("150") + " " + fw("8888") + " " + fw("6666") + "}",
    "座机{PHONE:" + fw("010-87654321") + "}", "我的手机是{PHONE:13812345678}。", "有事打{PHONE:+86 186 1234 5678}找我。",
    "身份证号{ID:" + cn_id("11010519491231002") + "}。", "我的身份证是{ID:" + cn_id("44030519900307123") + "}",
    "身份证：{ID:" + fw(cn_id("32010219851120004")) + "}", "邮箱{EMAIL:wangli1990@163.com}，随时联系。",
    "银行卡{BANK_CARD:" + luhn("622202123456789012") + "}", "我住在{ADDRESS:上海市浦东新区世纪大道100号}。",
    "家在{ADDRESS:杭州市西湖区文三路478号}", "我是{NAME:李娜}，手机{PHONE:13912345678}。",
    "我叫{NAME:欧阳娜娜}，电话{PHONE:" + fw("13700001111") + "}。",
]
EN = [
    "my name is {NAME:sarah}", "My name is {NAME:Sarah}.", "I'm {NAME:Sarah Connor}.", "I'm {NAME:Sarah Connor} and I've been struggling.",
    "Hi, I am {NAME:John}, nice to meet you.", "hi, this is {NAME:Emily} from the support group.", "This is {NAME:Michael Brown} speaking.",
    "You can call me {NAME:Jess}.", "call me {NAME:mike}, everyone does.", "my name's {NAME:tom}.", "Hello, I'm {NAME:David}.",
    "i'm {NAME:sarah}, 24, and anxious.", "I'm {NAME:Sarah}'s friend.", "I am {NAME:Maria Garcia}.", "Hey, I'm {NAME:Kevin}. I need help.",
    "My name is {NAME:Li Wei} and I moved here last year.", "MY NAME IS {NAME:JOHN SMITH}", "I'm {NAME:Anna}, and I'm tired.",
    "My name is {NAME:Mary Jones} and I'm 25.", "Please call me {NAME:Sam}.", "my name is {NAME:sarah connor}",
    "My therapist Dr. {NAME:Wilson} said it would pass.", "Mrs. {NAME:Thompson} next door keeps yelling.",
    "Email me at {EMAIL:sarah.connor@example.org}.", "Call {PHONE:(415) 555-0123} after six.", "my cell is {PHONE:415-555-0199}",
    "Reach me on {PHONE:+1 415 555 0100}.", "UK office {PHONE:+44 20 7946 0958}.", "card {BANK_CARD:4111 1111 1111 1111}",
    "I live at {ADDRESS:221 Baker Street} with my cat.", "I'm {NAME:Chris}, my number is {PHONE:212-555-0187}.",
    "call me {NAME:Sarah} at {PHONE:" + fw("415-555-0142") + "}",
]
KO = [
    "저는 {NAME:김민수}입니다.", "안녕하세요, 저는 {NAME:이서연}이에요.", "제 이름은 {NAME:박지영}입니다.", "제 이름은 {NAME:최준호}예요.",
    "저는 {NAME:정하늘}이라고 합니다.", "제 이름은 {NAME:남궁민}이에요.", "저는 {NAME:제갈현우}입니다.", "저는 {NAME:박서준}이라고 해요.",
    "안녕하세요. 제 이름은 {NAME:윤아름}이고, 대학생이에요.", "저는 {NAME:강민호}라고 합니다.", "제 친구 {NAME:김지훈} 씨가 소개해 줬어요.",
    "{NAME:이영희} 씨는 제 상사예요.", "제 이름은 {NAME:한소희}입니다. 잘 부탁드립니다.",
    "제 전화번호는 {PHONE:010-1234-5678}입니다.", "연락처: {PHONE:01098765432}", "{PHONE:+82 10-2345-6789}로 연락 주세요.",
    "번호: {PHONE:+82-10-3456-7890}", "번호는 {PHONE:010 4567 8901}이에요.", "사무실 번호는 {PHONE:02-3456-7890}입니다.",
    "집 전화 {PHONE:031-234-5678}", "핸드폰 {PHONE:" + fw("010-5555-1234") + "}", "{PHONE:+82 (0)10 1111 2222}로 전화 주세요.",
    "주민등록번호 {ID:" + rrn("900101123456") + "}", "주민번호는 {ID:" + rrn("851231234567") + "}입니다.",
    "주민등록번호: {ID:" + rrn("030512412345", dash=False) + "}", "주민번호 {ID:210315-312345" + str((int(rrn("210315312345")[-1]) + 1) % 10) + "}",
    "이메일은 {EMAIL:minsu.kim@naver.com}입니다.", "저는 {NAME:김민수}이고 번호는 {PHONE:010-2222-3333}이에요.",
]
ZH_CONTROLS = [
    "我是学生。", "我是一名护士。", "我是说我很累。", "我最近沉迷王者荣耀。", "我是不是太敏感了？", "我是家里的老大。", "高兴的时候我会唱歌。",
    "马上就要考试了，我很焦虑。", "周末我去了高中同学家。", "我跟李老师说了这件事。", "我是在黄河边上长大的。",
    "2023年我花了3999元买了手机，房间号302，时间10:30，日期2023-10-01。", "我今年25岁，体重60公斤。", "会议在10月1日下午3点。",
    "我每个月工资8000元，房租3500。", "我是学生，在学校里住。我叫不出他的名字", "我住在北京，在朝阳区工作。", "我是真的很想改变。",
    "我是从农村来的。", "我觉得自己很没用。", "张开双臂拥抱生活。", "我常常失眠，一周只睡20个小时。", "我的分数是98.5分，排名第3。",
    "订单号12345678已经发货。", "我妈妈总是批评我。", "王者荣耀和和平精英我都玩。", "我们班有45个人。", "电话费每月58元。",
    "我是独生子女。", "何必呢，我是想开了。", "我老公最近总是加班。", "白天工作，晚上学习。", "身份证号110105194912310021",
    "卡号 4111 1111 1111 1112", "我是" + fw("2023") + "年毕业的，花了" + fw("1299") + "元。", "我是个很内向的人。",
]
EN_CONTROLS = [
    "I am fine.", "I'm sad.", "I'm so tired of everything.", "I'm going to the doctor tomorrow.", "I am not sure what to do.",
    "This is hard for me.", "This is the third time this week.", "Call me tomorrow if you can.", "My name is not important.",
    "I'm feeling anxious.", "I'm a student.", "I'm 25 years old.", "I am an engineer.", "In 2019 I paid $1,299.99 for 3 items; my zip is 94110.",
    "I'm really struggling with my mother.", "I am Chinese.", "I'm here because my wife asked me.", "This is what I wanted.",
    "I'm okay, thanks.", "I'm just overwhelmed.", "The meeting is on 2023-10-01 at 10:30.", "I sleep 8 hours and walk 10,000 steps.",
    "I'm American, and I'm worried.", "ticket 12345678, order 123-4567, score 98.5%, 1/3 of 300 people", "I am Not Okay.",
    "I'm Sorry, I'm Late.", "This is Monday all over again.", "call me crazy, but it helps.",
]
KO_CONTROLS = [
    "저는 학생입니다.", "저는 주부입니다.", "저는 엄마입니다.", "저는 선생님이에요.", "저는 회사원입니다.", "저는 요즘 너무 힘들어요.",
    "제 이름은 중요하지 않아요.", "저는 이제 괜찮아요.", "오늘은 2023년 10월 1일입니다.", "가격은 15,000원이에요.", "저는 고등학생입니다.",
    "남편이 매일 늦게 와요.", "저는 정말 우울해요.", "저는 김치를 좋아해요.", "저는 서른 살입니다.", "저는 이번에 처음 상담을 받아요.",
    "저는 한국 사람입니다.", "저는 장남입니다.", "저는 막내예요.", "저는 간호사예요.", "우리 반에 학생이 30명 있어요.", "저는 신입사원이에요.",
    "저는 남편입니다.", "저는 아빠예요.", "제 번호는 3번이에요.", "저는 고3입니다.",
]

# Written after the rules were tuned on the rows above, and not tuned on: measures how the rules generalize.
FRESH = [
    ("zh", "我叫{NAME:慕容雪}，刚毕业。"), ("zh", "我的室友{NAME:孙丽丽}经常半夜打电话。"), ("zh", "我婆婆{NAME:刘桂兰}总是挑我的毛病。"),
    ("zh", "上周我和{NAME:何伟}吵了一架。"), ("zh", "{NAME:叶晨}是我最好的朋友。"), ("zh", "我的导师{NAME:郭建平}教授很严格。"),
    ("zh", "我老板{NAME:韩立}说我不够努力。"), ("zh", "我叫{NAME:东方明月}。"), ("zh", "电话：{PHONE:" + fw("186") + " " + fw("0000") + " " + fw("1234") + "}"),
    ("zh", "我的身份证号码是{ID:" + fw(cn_id("11010519491231002")) + "}"), ("zh", "我姐姐{NAME:宋雨欣}离婚了。"), ("zh", "{NAME:罗浩}天天打游戏不理我。"),
    ("en", "Hi there, I'm {NAME:Olivia}."), ("en", "my name is {NAME:jake} and i feel lost"), ("en", "This is Dr. {NAME:Patel}'s office."),
    ("en", "I am {NAME:Ahmed Khan}, a nurse."), ("en", "Everyone calls me {NAME:Bella}."), ("en", "I'm {NAME:Noah}, 17."),
    ("en", "Contact me: {EMAIL:noah_17@gmail.com}"), ("en", "my phone is {PHONE:650.555.0134}"),
    ("ko", "저는 {NAME:오지현}이에요."), ("ko", "제 이름은 {NAME:서민재}입니다."), ("ko", "동생 이름은 {NAME:김하은}이에요."),
    ("ko", "전화번호 {PHONE:010.3333.4444}"), ("ko", "남편 {NAME:박준영} 씨가 요즘 술을 많이 마셔요."), ("ko", "제 주민등록번호는 {ID:950615-2123456}"),
]
FRESH_CONTROLS = [
    ("zh", "我周一到周五都要上班。"), ("zh", "我觉得高考压力太大了。"), ("zh", "孩子马上要上初中了。"), ("zh", "我是单亲妈妈。"),
    ("zh", "我非常感谢您的帮助。"), ("zh", "祝你们生活幸福。"), ("zh", "白色的房间让我平静。"), ("zh", "我姓王。"), ("zh", "我们的方向错了。"),
    ("zh", "他说话总是很温和。"),
    ("en", "I'm worried about my exams."), ("en", "I am in so much pain."), ("en", "This is my last chance."), ("en", "I'm better now, thank you."),
    ("en", "I'm kind of lost."), ("en", "I am grateful for this."), ("en", "I'm seeing a therapist."), ("en", "I'm 30 and still living with my parents."),
    ("en", "I'm hopeful."), ("en", "Call me when you land."),
    ("ko", "저는 이번 주에 시험이 있어요."), ("ko", "저는 우울증 진단을 받았어요."), ("ko", "오늘은 기분이 좋아요."), ("ko", "저는 서울에 살아요."),
    ("ko", "저는 나이가 많아요."), ("ko", "저는 최선을 다했어요."), ("ko", "제 점수는 85점이에요."), ("ko", "저는 공무원입니다."),
]
# Found by probing the rules on new sentences and on the sample corpora after the fresh batch (the guard got them
# wrong, then was fixed); the nickname 小雨 is still missed: a name without a surname is not looked for.
PROBE = [("zh", "大家都叫我{NAME:小雨}。")]
PROBE_CONTROLS = [
    ("zh", "我叫外卖了。"), ("zh", "老师叫我回家。"), ("zh", "我儿子叫我别管他。"), ("zh", "我是白羊座。"), ("zh", "我是文科生。"),
    ("zh", "我叫车去机场。"), ("zh", "谢谢您的鼓励。"), ("zh", "参加一些培训和沙龙活动。"), ("zh", "增加内心的归属感和满足感。"),
    ("en", "I'm Chinese-American."), ("en", "I'm seventeen."), ("en", "I'm usually working out."), ("en", "I think this is doable."),
    ("ko", "저는 공대생이에요."),
]
PLACE = {"NAME": "[NAME]", "PHONE": "[PHONE]", "EMAIL": "[EMAIL]", "ID": "[ID]", "BANK_CARD": "[BANK_CARD]", "ADDRESS": "[ADDRESS]"}
KIND = {"NAME": "name", "PHONE": "phone", "EMAIL": "email", "ID": "id_number", "BANK_CARD": "bank_card", "ADDRESS": "address"}
MARK = re.compile(r"\{([A-Z_]+):([^}]*)\}")
rows = []
for lang, items in (("zh", ZH), ("en", EN), ("ko", KO)):
    for t in items:
        kinds = sorted({KIND[k] for k, _ in MARK.findall(t)})
        assert kinds, t
        rows.append({"text": MARK.sub(lambda m: m[2], t), "language": lang, "kind": "+".join(kinds),
                     "pii": [v for _, v in MARK.findall(t)], "redacted": MARK.sub(lambda m: PLACE[m[1]], t)})
for lang, items in (("zh", ZH_CONTROLS), ("en", EN_CONTROLS), ("ko", KO_CONTROLS)):
    for t in items:
        rows.append({"text": t, "language": lang, "kind": "control", "pii": [], "redacted": t})
for lang, t in FRESH:
    kinds = sorted({KIND[k] for k, _ in MARK.findall(t)})
    rows.append({"text": MARK.sub(lambda m: m[2], t), "language": lang, "kind": "+".join(kinds),
                 "pii": [v for _, v in MARK.findall(t)], "redacted": MARK.sub(lambda m: PLACE[m[1]], t), "batch": "fresh"})
for lang, t in FRESH_CONTROLS:
    rows.append({"text": t, "language": lang, "kind": "control", "pii": [], "redacted": t, "batch": "fresh"})
for lang, t in PROBE:
    kinds = sorted({KIND[k] for k, _ in MARK.findall(t)})
    rows.append({"text": MARK.sub(lambda m: m[2], t), "language": lang, "kind": "+".join(kinds),
                 "pii": [v for _, v in MARK.findall(t)], "redacted": MARK.sub(lambda m: PLACE[m[1]], t), "batch": "probe"})
for lang, t in PROBE_CONTROLS:
    rows.append({"text": t, "language": lang, "kind": "control", "pii": [], "redacted": t, "batch": "probe"})
for r in rows:
    r.setdefault("batch", "tuning")
texts = [r["text"] for r in rows]
assert len(set(texts)) == len(texts), [t for t in texts if texts.count(t) > 1]
out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("pii_labelled.jsonl")
with open(out, "w", encoding="utf-8") as f:
    for r in rows:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
print(len(rows), Counter((r["language"], r["kind"] == "control") for r in rows))
