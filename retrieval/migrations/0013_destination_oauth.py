# A grant per mailbox and purpose: the source polled, or the IMAP mailbox
# delivered into (issue 16). Existing grants are the source's.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("retrieval", "0012_console_indexes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="oauthgrant",
            name="mailbox",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="oauth_grants",
                to="retrieval.mailbox",
            ),
        ),
        migrations.AddField(
            model_name="oauthgrant",
            name="purpose",
            field=models.CharField(
                choices=[
                    ("source", "Source mailbox"),
                    ("destination", "Destination mailbox"),
                ],
                default="source",
                editable=False,
                max_length=12,
            ),
        ),
        migrations.AddConstraint(
            model_name="oauthgrant",
            constraint=models.UniqueConstraint(
                fields=("mailbox", "purpose"), name="oauthgrant_one_per_purpose"
            ),
        ),
    ]
