"""Word lists the privacy guard (redact.py) uses to tell a personal name from an ordinary word.

Kept apart from the patterns so a missed name or a false alarm is fixed by editing a list, not a regex.
"""

from __future__ import annotations

# Chinese surnames: the ~300 most common single ones (Ministry of Public Security ranking) minus characters
# that are mostly function words (和, 都, 但, 由, 来 …), and the compound ones in use today.
ZH_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢"
    "姜崔钟谭陆汪范金石廖贾夏韦付傅方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤常温康施"
    "文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛"
    "曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫"
    "米柏宗瞿桂全佟应臧闵苟邬边卞姬师仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝封谈匡鞠惠荆乐冀郁胥南班"
    "储栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻厉伊仝区郜阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿狄计索宣晋云容敬扈晁芮普"
    "阙浦戈伏鹿薄邸雍辜羊乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇哈湛宾戎勾茅揭尉冶斯束檀阴昝智幸奉植"
    "衡富尧闭"
)
ZH_COMPOUND_SURNAMES = (
    "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文", "司徒", "夏侯", "轩辕",
    "令狐", "端木", "独孤", "南宫", "西门", "呼延", "赫连", "澹台", "申屠", "钟离", "闻人", "万俟", "濮阳", "淳于",
    "司空", "拓跋", "东郭", "第五", "百里",
)
# A name right after one of these is someone's ("我妈妈王秀英", "朋友赵敏", "她叫何静").
ZH_BEFORE_NAME = (
    "妈妈", "爸爸", "母亲", "父亲", "老公", "老婆", "丈夫", "妻子", "爱人", "对象", "男朋友", "女朋友", "男友", "女友",
    "前夫", "前妻", "同事", "同学", "朋友", "室友", "舍友", "闺蜜", "老板", "领导", "上司", "哥哥", "姐姐", "弟弟",
    "妹妹", "儿子", "女儿", "表哥", "表姐", "表弟", "表妹", "堂哥", "堂姐", "堂弟", "堂妹", "爷爷", "奶奶", "外公",
    "外婆", "叔叔", "阿姨", "舅舅", "姑姑", "邻居", "房东", "网友", "班主任", "咨询师", "经理", "主管", "孩子",
    "婆婆", "公公", "岳父", "岳母", "导师", "上级", "下属", "病人", "来访者", "叫", "名叫", "叫做",
)
# …and a weaker hint: 我是李娜, but also 我是白羊座.
ZH_INTRO_WORDS = ("我是", "本人")
# …and one right before these ("陈晓红女士", "林国栋老师"); a surname alone before them ("李老师") is no name.
ZH_TITLES = (
    "先生", "女士", "小姐", "老师", "医生", "大夫", "教授", "律师", "护士", "经理", "主任", "校长", "院长", "同学",
    "阿姨", "叔叔", "师傅", "博士", "总",
)
# jieba tags these nr (person name) although in counseling text they are ordinary words.
ZH_NOT_NAMES = frozenset({"荣耀", "老公", "明白", "谢谢", "张开", "高三", "高中", "安静", "宝贝", "宝宝", "白领", "康复",
                          "周转", "胡闹", "高薪", "孤儿", "查明", "周旋", "张嘴", "张口", "加薪", "温馨", "祝福", "明智",
                          "高雅", "时髦", "高兴", "常常", "马上", "向往", "安心", "金钱", "文明", "光荣", "明星"})

# Korean surnames (over 99% of the population), compound ones first so 남궁민 is not read as 남 + 궁민.
KO_COMPOUND_SURNAMES = ("남궁", "황보", "제갈", "선우", "독고", "사공", "서문", "동방")
KO_SURNAMES = frozenset(
    "김이박최정강조윤장임한오서신권황안송류유전홍고문양손배백허남심노하곽성차주우구민진나지엄채원천방공현함변염여"
    "추도소석선설마길연위표명기반왕금옥육인맹제모탁국어은편용예경봉사부"
)
# Words that start with a surname syllable and follow 저는 … 입니다 as often as a name does.
KO_NOT_NAMES = frozenset({
    "엄마", "주부", "선생", "선생님", "장남", "장녀", "남편", "남자", "여자", "고객", "정말", "이번", "이제", "조카", "손녀",
    "손자", "하나", "공무원", "공부", "기자", "김치", "남동생", "여동생", "오빠", "전업", "전문가", "진짜", "우리", "유학생",
    "원장", "사장", "사장님", "사원", "신입", "신입생", "신자", "문제", "백수", "변호사", "배우", "가수", "국민", "노인",
    "모범생", "박사", "반장", "부모", "부장", "석사", "성인", "연구원", "우등생", "인간", "임산부", "장애인", "제자", "조교",
    "주인", "지금", "차장", "천사", "최고", "최악", "하루", "한부모", "현재", "이상", "정상", "정도", "이유", "주말", "오늘",
    "한국인", "외국인", "중국인", "미국인", "일본인", "고아", "막내", "나", "저", "이모", "고모", "삼촌", "형", "누나", "언니",
    "동생", "아내", "남친", "여친", "상담사", "의사", "간호사", "교사", "학생", "대학생", "고등학생", "중학생", "초등학생",
})

# Words after "I'm / I am / this is / call me" that describe, not name, the speaker.
EN_NOT_NAMES = frozenset("""
a an the not no so very really just still always never also too quite pretty kind sort here there from in at on
with without about for to of by into out up down over back home away off afraid alone alright all ok okay fine good
great well better worse bad sad mad glad happy unhappy tired sick ill sorry sure unsure fed done over through ready
late early new old young single married divorced separated widowed pregnant lonely lost stuck scared angry upset
anxious nervous worried stressed depressed exhausted overwhelmed confused frustrated hurt broken numb empty hopeless
helpless ashamed guilty jealous embarrassed afraid terrified desperate suicidal fragile weak strong okay scared
grateful thankful sorry curious serious honest calm busy free available unemployed retired homeless broke poor rich
safe unsafe fat thin ugly stupid dumb smart useless worthless bored boring awake asleep drunk high sober clean gay
straight bi trans male female christian muslim jewish catholic buddhist hindu atheist american chinese korean british
english canadian mexican indian japanese african asian european black white latino latina one two three four five six
seven eight nine ten twenty thirty forty fifty sixty someone somebody nobody everyone anyone something nothing
everything anything what who why how when where which that this it its his her their my your our me him them you us
we they she he i and or but if because since as like than then now today tonight tomorrow yesterday monday tuesday
wednesday thursday friday saturday sunday weekend morning evening night right wrong able unable trying going getting
having feeling doing being coming leaving starting working living thinking hoping looking calling writing reaching
struggling dealing worried concerned convinced aware certain positive sorry crazy nuts insane weird different normal
the mom dad mother father wife husband son daughter brother sister parent student teacher nurse doctor engineer
manager worker mess wreck failure loser disappointment burden problem fan member patient client friend boyfriend
girlfriend partner boss adult kid child teen teenager man woman guy girl boy lady person human mum old-fashioned
gonna about almost nearly barely hardly actually honestly literally basically probably maybe definitely totally
completely absolutely extremely incredibly super hard easy difficult tough true false fun funny awful
terrible horrible amazing weird strange more less most least usually already around given healthy
unhealthy alive dead hungry cold hot sleepy only even ever often sometimes mostly finally currently constantly
comfortable miserable doable capable responsible mr mrs ms miss dr prof eleven twelve thirteen fourteen
fifteen sixteen seventeen eighteen nineteen hundred
""".split())
