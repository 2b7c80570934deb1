"""What a served nb2prod service imports. Never imports Great Expectations.

Generated ``service.py`` files call ``nb2prod.runtime.service.make_service``.
"""
