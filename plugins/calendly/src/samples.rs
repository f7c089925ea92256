//! Calendly's documented example `invitee.created` webhook body, reproduced for the tests.
//!
//! This is the example from Calendly's "Webhook Payload" reference (v2 webhooks), with its
//! placeholder URIs and the scheduled event's schema-example times kept as they are.

/// The documented `invitee.created` example.
pub const INVITEE_CREATED: &str = r##"{
  "created_at": "2020-11-23T17:51:19.000000Z",
  "created_by": "https://api.calendly.com/users/AAAAAAAAAAAAAAAA",
  "event": "invitee.created",
  "payload": {
    "cancel_url": "https://calendly.com/cancellations/AAAAAAAAAAAAAAAA",
    "created_at": "2020-11-23T17:51:18.327602Z",
    "email": "test@example.com",
    "event": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2",
    "first_name": null,
    "last_name": null,
    "name": "John Doe",
    "new_invitee": null,
    "old_invitee": null,
    "questions_and_answers": [],
    "reschedule_url": "https://calendly.com/reschedulings/AAAAAAAAAAAAAAAA",
    "rescheduled": false,
    "routing_form_submission": null,
    "scheduled_event": {
      "uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2",
      "name": "15 Minute Meeting",
      "meeting_notes_plain": "Internal meeting notes",
      "meeting_notes_html": "<p>Internal meeting notes</p>",
      "status": "active",
      "start_time": "2019-08-24T14:15:22.123456Z",
      "end_time": "2019-08-24T14:15:22.123456Z",
      "event_type": "https://api.calendly.com/event_types/GBGBDCAADAEDCRZ2",
      "location": {
        "type": "physical",
        "location": "string",
        "additional_info": "string"
      },
      "invitees_counter": {
        "total": 0,
        "active": 0,
        "limit": 0
      },
      "created_at": "2019-01-02T03:04:05.092125Z",
      "updated_at": "2019-01-02T03:04:05.092125Z",
      "event_memberships": [
        {
          "user": "https://api.calendly.com/users/GBGBDCAADAEDCRZ2",
          "user_email": "user@example.com",
          "user_name": "John Smith"
        }
      ],
      "event_guests": [
        {
          "email": "user@example.com",
          "created_at": "2019-08-07T06:05:04.321123Z",
          "updated_at": "2019-08-07T06:05:04.321123Z"
        }
      ]
    },
    "scheduling_method": null,
    "invitee_scheduled_by": null,
    "status": "active",
    "text_reminder_number": null,
    "timezone": "America/New_York",
    "tracking": {
      "utm_campaign": null,
      "utm_source": null,
      "utm_medium": null,
      "utm_content": null,
      "utm_term": null,
      "salesforce_uuid": null
    },
    "updated_at": "2020-11-23T17:51:18.341657Z",
    "uri": "https://api.calendly.com/scheduled_events/AAAAAAAAAAAAAAAA/invitees/AAAAAAAAAAAAAAAA"
  }
}"##;
