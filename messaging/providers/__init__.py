"""The only modules that import the twilio SDK: REST calls (twilio_rest) and TwiML (twiml)."""
