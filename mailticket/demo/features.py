"""What `mailticket demo` switches on so that a newcomer sees it: the language, the shop's time zone, business
hours, SLAs (one for everyone, one for the marketplace partner), two routing rules and three canned replies.

Portuguese by default, as the shop of the samples works; `mailticket demo --language en` has the English pages,
English mail to customers and English canned replies (the sample mail stays as customers wrote it).
"""

from __future__ import annotations

from mailticket.config import BusinessHoursSettings, RouteSettings, SlaSettings

LANGUAGES = ("pt-BR", "en")
DEFAULT_LANGUAGE = "pt-BR"
TIMEZONE = "America/Sao_Paulo"
PARTNER_DOMAIN = "mercadoexemplo.com.br"  # demo.mail.PARTNER_ADDRESS is at a subdomain of it
HOUR = 3600.0
OPEN, CLOSE = "09:00", "18:00"
WEEKDAYS = range(5)  # Monday to Friday

BUSINESS_HOURS = BusinessHoursSettings(timezone=TIMEZONE, weekly={day: ((OPEN, CLOSE),) for day in WEEKDAYS})

# The first that applies wins: the partner's (it asks for an answer within 24 hours), then everyone's.
SLAS = (
    SlaSettings(name="parceiro", sender_domain=PARTNER_DOMAIN, first_response=4 * HOUR, resolution=18 * HOUR),
    SlaSettings(name="padrão", first_response=9 * HOUR, resolution=45 * HOUR),  # business hours: 1 and 5 days
)

ROUTES = (
    RouteSettings(name="marketplace", from_domain=PARTNER_DOMAIN, queue="marketplace", priority="high"),
    RouteSettings(name="trocas e devoluções", queue="trocas",
                  subject_keywords=("troca", "trocar", "devolução", "devolver", "defeito", "reembolso", "refund",
                                    "wrong colour")),
)

# (title, body); the placeholders are those of mailticket.service.canned.
CANNED_REPLIES = {
    "pt-BR": (
        ("Pedido em trânsito",
         "Olá, {customer_name}!\n\nVerificamos com a transportadora: o seu pedido está a caminho e deve chegar em "
         "até 3 dias úteis. Assim que tivermos o novo código de rastreio, avisamos por aqui.\n\n"
         "Atenciosamente,\n{operator_name}\nLoja Exemplo"),
        ("Troca ou devolução",
         "Olá, {customer_name}!\n\nA troca é gratuita em até 30 dias. Enviaremos por e-mail uma etiqueta de "
         "postagem: basta levar o produto, na embalagem original, a uma agência dos Correios.\n\n"
         "Qualquer dúvida, responda a este e-mail (chamado {ticket_number}).\n\n{operator_name}\nLoja Exemplo"),
        ("Nota fiscal",
         "Olá, {customer_name}!\n\nSegue em anexo a nota fiscal do seu pedido. Se precisar dela em nome de uma "
         "empresa, responda com o CNPJ e a razão social que emitimos uma nova.\n\n{operator_name}\nLoja Exemplo"),
    ),
    "en": (
        ("Order in transit",
         "Hello {customer_name},\n\nWe checked with the carrier: your order is on its way and should arrive within "
         "3 working days. We will let you know the new tracking code as soon as we have it.\n\n"
         "Kind regards,\n{operator_name}\nLoja Exemplo"),
        ("Exchange or return",
         "Hello {customer_name},\n\nExchanges are free within 30 days. We will e-mail you a prepaid shipping label: "
         "take the item, in its original box, to any post office.\n\n"
         "Any question, just answer this mail (ticket {ticket_number}).\n\n{operator_name}\nLoja Exemplo"),
        ("Invoice",
         "Hello {customer_name},\n\nPlease find your order's invoice attached. If you need it in a company's name, "
         "answer with the company's name and tax number and we will issue a new one.\n\n"
         "{operator_name}\nLoja Exemplo"),
    ),
}
