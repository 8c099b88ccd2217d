"""Demo texts of varied length and language: Chinese, English, mixed, numbers, abbreviations."""

from typing import Final

TEXTS: Final = (
    "你好，欢迎使用语音合成服务。",
    "The quick brown fox jumps over the lazy dog.",
    "今天北京的最高气温是23.5度，空气质量良好，适合户外活动。",
    "Dr. Chen said the GPU cluster served 1200 requests per minute, e.g. at peak hours.",
    "我们在2024年发布了新版本，平均延迟降低了35%，显存占用减少了1.2GB。",
    "请注意，您的航班CA1234将于下午3点45分起飞，请提前到达登机口。感谢您的配合，祝您旅途愉快！",
    "Our TTS service now supports streaming output. The first audio chunk arrives "
    "in under 300 milliseconds, and the real-time factor stays below 0.2 on one GPU.",
    "在人工智能快速发展的今天，语音合成技术已经广泛应用于智能客服、有声读物、虚拟主播等场景。"
    "为了保证服务质量，我们需要持续监控每个阶段的延迟和资源占用，及时发现性能退化。",
    "The model was trained on 100000 hours of speech. 它支持中英文混合输入，"
    "例如这句话里的AI和API都会被正确朗读。",
    "第一季度营收为12345678元，同比增长18%；第二季度预计将达到15000000元。"
    "管理层表示，将继续加大在语音技术和多模态大模型上的投入，提升用户体验。",
)
